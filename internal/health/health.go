// Package health answers Docker's HEALTHCHECK: is Postfix answering SMTP on
// 25, is Dovecot completing TLS on 993, how many messages wait in the
// queue and in the rescue directory, how long the certificate has left,
// and whether the appliance runs degraded (on its last valid
// configuration because the spec on disk is invalid).
package health

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"quietmx/internal/certs"
)

// Report is one health check.
type Report struct {
	SMTP     error
	IMAPS    error
	Queue    int // messages in incoming, active, deferred, hold
	QueueErr error
	CertDays int
	CertErr  error
	// Rescued counts the messages waiting in RescueDir ("" = none
	// configured); RescueErr says why they could not be counted.
	Rescued   int
	RescueDir string
	RescueErr error
	// Degraded is why the appliance runs on its last valid configuration,
	// or "" when it runs on the spec on disk.
	Degraded string
}

// Healthy is false when a service does not answer or the certificate has
// expired. A long queue is reported, not fatal: it is what "never bounce"
// looks like while a filter is broken. So are rescued mail and a degraded
// run: mail flows, and restarting would not fix either.
func (r Report) Healthy() bool {
	return r.SMTP == nil && r.IMAPS == nil && r.CertErr == nil && r.CertDays >= 0
}

func (r Report) String() string {
	status := func(err error) string {
		if err != nil {
			return "FAIL (" + err.Error() + ")"
		}
		return "ok"
	}
	cert := fmt.Sprintf("%d days left", r.CertDays)
	if r.CertErr != nil {
		cert = "FAIL (" + r.CertErr.Error() + ")"
	} else if r.CertDays < 0 {
		cert = "EXPIRED"
	}
	queue := fmt.Sprint(r.Queue)
	if r.QueueErr != nil {
		queue = "unknown (" + r.QueueErr.Error() + ")"
	}
	line := fmt.Sprintf("smtp %s; imaps %s; queue %s; certificate %s", status(r.SMTP), status(r.IMAPS), queue, cert)
	switch {
	case r.RescueErr != nil:
		line += fmt.Sprintf("; rescued unknown (%v)", r.RescueErr)
	case r.RescueDir != "":
		line += fmt.Sprintf("; rescued %d", r.Rescued)
		if r.Rescued > 0 {
			line += " waiting in " + r.RescueDir
		}
	}
	if r.Degraded != "" {
		line = "DEGRADED (" + r.Degraded + "); " + line
	}
	return line
}

// Check probes the services at host (usually 127.0.0.1).
func Check(host, queueDir, certFile string, timeout time.Duration) Report {
	var r Report
	r.SMTP = SMTP(net.JoinHostPort(host, "25"), timeout)
	r.IMAPS = IMAPS(net.JoinHostPort(host, "993"), timeout)
	r.Queue, r.QueueErr = QueueSize(queueDir)
	if info, err := certs.Read(certFile); err != nil {
		r.CertErr = err
	} else {
		r.CertDays = certs.DaysLeft(info, time.Now())
	}
	return r
}

func SMTP(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("banner %q", strings.TrimSpace(line))
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return nil
}

func IMAPS(addr string, timeout time.Duration) error {
	d := &net.Dialer{Timeout: timeout}
	// A liveness probe of our own service on loopback: the certificate's
	// name is irrelevant here (it is checked by clients, and by the e2e suite).
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "* OK") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	return nil
}

// QueueSize counts queue files the way mailq would, without needing the
// queue manager: every file under the queue's message directories.
func QueueSize(queueDir string) (int, error) {
	n := 0
	for _, q := range []string{"incoming", "active", "deferred", "hold", "maildrop"} {
		c, err := CountFiles(filepath.Join(queueDir, q))
		n += c
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// CountFiles counts the regular files below dir whose names do not start
// with a dot (a queue directory is hashed into subdirectories; a dot-file
// in a rescue directory is a copy still being written). A missing dir
// counts none.
func CountFiles(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if d == nil || errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			return err
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
			n++
		}
		return nil
	})
	return n, err
}

// RescueCount counts the messages waiting in a rescue directory. When it
// is a Maildir's new/, the messages an IMAP client has seen (cur/) still
// wait: they are not in the mailbox they were meant for.
func RescueCount(dir string) (int, error) {
	if dir == "" {
		return 0, nil
	}
	dir = filepath.Clean(dir)
	n, err := CountFiles(dir)
	if err != nil || filepath.Base(dir) != "new" {
		return n, err
	}
	cur, err := CountFiles(filepath.Join(filepath.Dir(dir), "cur"))
	return n + cur, err
}

// DegradedFile, in the supervisor's status directory, holds why the
// appliance runs on its last valid configuration; it exists only then.
const DegradedFile = "degraded"

// StatusDir is the supervisor's status directory in the image.
const StatusDir = "/run/quietmx"

// ReadDegraded returns the reason in statusDir's DegradedFile, or "".
func ReadDegraded(statusDir string) string {
	data, err := os.ReadFile(filepath.Join(statusDir, DegradedFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
