// Command coldstart times one cold start of the appliance: it starts the
// clock, runs the given command (a `docker run -d ...` line) and, at the
// same time, polls two host ports every -interval until port 25 answers
// EHLO with 250 and port 993 completes a TLS handshake. It prints one line
// of key=value pairs (milliseconds since the clock started):
//
//	run_ms=...     when the command (docker run -d) returned
//	smtp_ms=...    first EHLO answered with 250 on -smtp
//	imaps_ms=...   first TLS handshake completed on -imaps
//	ready_ms=...   the later of the two
//	start_ns=...   the clock's start, Unix nanoseconds (to place the
//	               container's timestamped log lines on the same clock)
//
// The strings {smtp} and {imaps} in the command are replaced by the host
// ports it picked (free loopback ports), so the command can publish the
// container's 25 and 993 there: `-p 127.0.0.1:{smtp}:25`.
//
// Docker's userland proxy accepts on a published port before anything
// listens in the container and then hangs up, so a plain connect proves
// nothing: only a 220 greeting followed by a 250 reply to EHLO, and a
// finished TLS handshake, count. The certificate is generated at the
// container's first start, so it cannot be verified here (the throughput
// benchmark verifies it).
//
// Used by e2e/bench/image.sh. No assertions: it measures and prints.
//
//	coldstart [-interval 20ms] [-timeout 60s] -- docker run -d ... IMAGE
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	interval := flag.Duration("interval", 20*time.Millisecond, "poll interval")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	host := flag.String("host", "127.0.0.1", "host the ports are published on")
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: coldstart [flags] -- COMMAND ARGS... ({smtp}/{imaps} = picked host ports)")
		os.Exit(2)
	}
	smtpPort, imapsPort, err := freePorts(*host)
	if err != nil {
		fmt.Fprintln(os.Stderr, "coldstart:", err)
		os.Exit(1)
	}
	for i, a := range args {
		a = strings.ReplaceAll(a, "{smtp}", strconv.Itoa(smtpPort))
		args[i] = strings.ReplaceAll(a, "{imaps}", strconv.Itoa(imapsPort))
	}
	smtpAddr := net.JoinHostPort(*host, strconv.Itoa(smtpPort))
	imapsAddr := net.JoinHostPort(*host, strconv.Itoa(imapsPort))

	start := time.Now()
	ms := func() float64 { return float64(time.Since(start).Microseconds()) / 1000 }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var smtpMS, imapsMS float64 = -1, -1
	poll := func(dst *float64, probe func() error) {
		defer wg.Done()
		t := time.NewTicker(*interval)
		defer t.Stop()
		for {
			if probe() == nil {
				*dst = ms()
				return
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}
	wg.Add(2)
	go poll(&smtpMS, func() error { return probeSMTP(smtpAddr) })
	go poll(&imapsMS, func() error { return probeIMAPS(imapsAddr) })

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	out, runErr := cmd.Output()
	runMS := ms()
	if runErr != nil {
		close(stop)
		wg.Wait()
		fmt.Fprintf(os.Stderr, "coldstart: %s: %v\n", args[0], runErr)
		os.Exit(1)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(*timeout):
		close(stop)
		<-done
	}
	id := strings.TrimSpace(string(out))
	if len(id) > 12 {
		id = id[:12]
	}
	fmt.Printf("container=%s run_ms=%.0f smtp_ms=%.0f imaps_ms=%.0f ready_ms=%.0f start_ns=%d\n",
		id, runMS, smtpMS, imapsMS, maxReady(smtpMS, imapsMS), start.UnixNano())
	if smtpMS < 0 || imapsMS < 0 {
		os.Exit(1)
	}
}

func maxReady(a, b float64) float64 {
	if a < 0 || b < 0 {
		return -1
	}
	return max(a, b)
}

// freePorts picks two distinct free TCP ports on host.
func freePorts(host string) (int, int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range 2 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, 0, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports[0], ports[1], nil
}

// probeSMTP succeeds when the server greets with 220 and answers EHLO with
// 250.
func probeSMTP(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	if err := reply(r, "220"); err != nil {
		return err
	}
	if _, err := c.Write([]byte("EHLO coldstart.bench.example\r\n")); err != nil {
		return err
	}
	if err := reply(r, "250"); err != nil {
		return err
	}
	c.Write([]byte("QUIT\r\n"))
	return nil
}

// reply reads one (possibly multi-line) SMTP reply and checks its code.
func reply(r *bufio.Reader, code string) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 || line[:3] != code {
			return fmt.Errorf("unexpected reply %q", strings.TrimSpace(line))
		}
		if line[3] == ' ' {
			return nil
		}
	}
}

// probeIMAPS succeeds when a TLS handshake on addr completes.
func probeIMAPS(addr string) error {
	d := &net.Dialer{Timeout: time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		InsecureSkipVerify: true, // generated at first start; see the package comment
		MinVersion:         tls.VersionTLS12,
	})
	if err != nil {
		return err
	}
	return c.Close()
}
