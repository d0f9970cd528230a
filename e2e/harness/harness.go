// Package harness is what the end-to-end suite (e2e, build tag e2e) and
// the benchmarks under e2e/bench share: the one SMTP sender, built on
// go-smtp's client, and the one wait (poll until a condition holds or a
// deadline passes; never a fixed sleep).
package harness

import (
	"crypto/tls"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/emersion/go-smtp"
)

// Dial opens an SMTP session and says EHLO as helo.
func Dial(addr, helo string) (*smtp.Client, error) {
	return ehlo(smtp.Dial(addr))(helo)
}

// DialStartTLS opens an SMTP session, starts TLS with cfg (which verifies
// the server's certificate unless cfg says otherwise) and says EHLO as
// helo inside TLS. (go-smtp says "EHLO localhost" before STARTTLS; the
// session state, HELO name included, starts over after it.)
func DialStartTLS(addr, helo string, cfg *tls.Config) (*smtp.Client, error) {
	return ehlo(smtp.DialStartTLS(addr, cfg))(helo)
}

// ehlo says EHLO on a session just opened, and closes it on failure.
func ehlo(c *smtp.Client, err error) func(helo string) (*smtp.Client, error) {
	return func(helo string) (*smtp.Client, error) {
		if err != nil {
			return nil, err
		}
		if err := c.Hello(helo); err != nil {
			c.Close()
			return nil, fmt.Errorf("EHLO: %w", err)
		}
		return c, nil
	}
}

// SendOn sends one message on an open session: MAIL, RCPT for each
// recipient, DATA. It returns the server's reply to the end of the data
// (Postfix: "2.0.0 Ok: queued as <queue id>"). The session stays open for
// the next message.
func SendOn(c *smtp.Client, from string, to []string, msg []byte) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", fmt.Errorf("MAIL FROM:<%s>: %w", from, err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return "", fmt.Errorf("RCPT TO:<%s>: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		w.Close()
		return "", fmt.Errorf("DATA: %w", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", fmt.Errorf("end of DATA: %w", err)
	}
	return resp.StatusText, nil
}

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// QueueID is the queue id in Postfix's reply to the end of the data, or
// "" if there is none.
func QueueID(reply string) string {
	if m := queuedAs.FindStringSubmatch(reply); m != nil {
		return m[1]
	}
	return ""
}

// Send delivers one message in a session of its own and returns the
// server's reply to the end of the data.
func Send(addr, helo, from string, to []string, msg []byte) (string, error) {
	c, err := Dial(addr, helo)
	if err != nil {
		return "", err
	}
	defer c.Close()
	reply, err := SendOn(c, from, to, msg)
	if err != nil {
		return "", err
	}
	return reply, c.Quit()
}

// SendStartTLS delivers one message in a session of its own, over
// STARTTLS with cfg.
func SendStartTLS(addr, helo string, cfg *tls.Config, from string, to []string, msg []byte) error {
	c, err := DialStartTLS(addr, helo, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := SendOn(c, from, to, msg); err != nil {
		return err
	}
	return c.Quit()
}

// ErrTimeout is what Until returns when the condition did not hold in
// time.
var ErrTimeout = errors.New("timed out")

// Until calls check every interval until it reports done, returns an
// error (which Until returns), or within has passed (ErrTimeout). check
// runs at least once, and once more at the deadline.
func Until(within, every time.Duration, check func() (done bool, err error)) error {
	deadline := time.Now().Add(within)
	for {
		last := time.Now().After(deadline)
		done, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if last {
			return fmt.Errorf("%w after %v", ErrTimeout, within)
		}
		time.Sleep(min(every, time.Until(deadline)+time.Millisecond))
	}
}

// FindServe is a shell script for the appliance container (which has no
// ps or pkill): it prints "PID UID RSS_KIB PEAK_KIB" for every running
// `altpostlocal serve`, the resident daemon.
const FindServe = `for p in /proc/[0-9]*; do
  c=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
  case "$c" in "/usr/local/bin/altpostlocal serve "*)
    echo "${p#/proc/} $(awk '/^Uid:/ {u=$2} /^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} END {print u, r, h}' "$p/status")";;
  esac
done`
