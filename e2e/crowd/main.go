//go:build e2e

// Command crowd is the e2e suite's load from other client addresses
// (TestProtection): each container on the test network running it is one
// address the appliance sees, unlike the host, whose connections all come
// through Docker's gateway address.
//
//	crowd idle  -to HOST:25  -n N
//	    open N SMTP connections and read each one's first reply line; print
//	    one summary line, then hold the connections open until killed.
//	crowd guess -to HOST:993 -user U -pass P -conns C -for D
//	    C parallel IMAPS connections send LOGIN U P over and over for D,
//	    reconnecting whenever the server hangs up; print one summary line.
//
// The summary is "crowd: " and a JSON object, which the test reads from the
// container log. The suite builds crowd as a static binary and runs it in a
// container of the appliance image with the binary bind-mounted.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: crowd idle|guess [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	to := fs.String("to", "", "server address")
	n := fs.Int("n", 50, "idle: connections")
	user := fs.String("user", "", "guess: login")
	pass := fs.String("pass", "", "guess: password")
	conns := fs.Int("conns", 20, "guess: parallel connections")
	dur := fs.Duration("for", time.Minute, "guess: how long")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "idle":
		idle(*to, *n)
	case "guess":
		guess(*to, *user, *pass, *conns, *dur)
	default:
		fmt.Fprintf(os.Stderr, "crowd: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

func report(v any) {
	b, _ := json.Marshal(v)
	fmt.Printf("crowd: %s\n", b)
}

// IdleResult counts the first replies of an idle flood.
type IdleResult struct {
	Banner   int      `json:"banner"`   // 220: connection held
	Refused  int      `json:"refused"`  // 421: over the per-client limit
	Other    int      `json:"other"`    // anything else, or an error
	Examples []string `json:"examples"` // one line of each kind seen
}

func idle(to string, n int) {
	var mu sync.Mutex
	var res IdleResult
	seen := map[string]bool{}
	var held []net.Conn
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", to, 10*time.Second)
			line := ""
			if err == nil {
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				line, err = bufio.NewReader(c).ReadString('\n')
				c.SetReadDeadline(time.Time{})
			}
			mu.Lock()
			defer mu.Unlock()
			kind := "other"
			switch {
			case err != nil:
				line = err.Error()
			case strings.HasPrefix(line, "220"):
				kind = "banner"
				res.Banner++
				held = append(held, c)
			case strings.HasPrefix(line, "421"):
				kind = "refused"
				res.Refused++
				c.Close()
			}
			if kind == "other" {
				res.Other++
				if c != nil {
					c.Close()
				}
			}
			if !seen[kind] {
				seen[kind] = true
				res.Examples = append(res.Examples, strings.TrimSpace(line))
			}
		}()
	}
	wg.Wait()
	report(res)
	hold()
	runtime.KeepAlive(held)
}

// hold waits for the container's end (SIGTERM or SIGKILL), keeping
// whatever is open.
func hold() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

// GuessResult counts a password-guessing run.
type GuessResult struct {
	Attempts   int64 `json:"attempts"`   // LOGIN commands answered
	Refused    int64 `json:"refused"`    // answered NO
	Accepted   int64 `json:"accepted"`   // answered OK (a wrong password must never be)
	Reconnects int64 `json:"reconnects"` // connections opened
	Errors     int64 `json:"errors"`     // dial or TLS failures
}

func guess(to, user, pass string, conns int, dur time.Duration) {
	var res GuessResult
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for time.Now().Before(end) {
				atomic.AddInt64(&res.Reconnects, 1)
				if !session(to, user, pass, end, &res) {
					atomic.AddInt64(&res.Errors, 1)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}(i)
	}
	wg.Wait()
	report(&res)
	hold()
}

// session tries LOGIN on one connection until the server hangs up or end
// passes; false if it could not even connect.
func session(to, user, pass string, end time.Time, res *GuessResult) bool {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", to, &tls.Config{InsecureSkipVerify: true}) // the attacker does not care who answers
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(end.Add(30 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // * OK greeting
		return true
	}
	for tag := 1; time.Now().Before(end); tag++ {
		t := fmt.Sprintf("g%d", tag)
		if _, err := fmt.Fprintf(c, "%s LOGIN \"%s\" \"%s\"\r\n", t, user, pass); err != nil {
			return true
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return true
			}
			if strings.HasPrefix(line, "* BYE") {
				return true
			}
			if strings.HasPrefix(line, t+" ") {
				atomic.AddInt64(&res.Attempts, 1)
				if strings.HasPrefix(line, t+" OK") {
					atomic.AddInt64(&res.Accepted, 1)
				} else {
					atomic.AddInt64(&res.Refused, 1)
				}
				break
			}
		}
	}
	return true
}
