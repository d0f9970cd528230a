// Package health answers Docker's HEALTHCHECK: is Postfix answering SMTP on
// 25, is Dovecot completing TLS on 993, how many messages wait in the
// queue, and how long the certificate has left.
package health

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io/fs"
	"net"
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
}

// Healthy is false when a service does not answer or the certificate has
// expired. A long queue is reported, not fatal: it is what "never bounce"
// looks like while a filter is broken.
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
	return fmt.Sprintf("smtp %s; imaps %s; queue %s; certificate %s", status(r.SMTP), status(r.IMAPS), queue, cert)
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
		err := filepath.WalkDir(filepath.Join(queueDir, q), func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				if d == nil {
					return fs.SkipDir
				}
				return err
			}
			if d.Type().IsRegular() {
				n++
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
