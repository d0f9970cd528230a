package harness

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestUntil(t *testing.T) {
	n := 0
	if err := Until(time.Second, time.Millisecond, func() (bool, error) { n++; return n == 3, nil }); err != nil || n != 3 {
		t.Errorf("Until: %v after %d checks, want nil after 3", err, n)
	}
	n = 0
	err := Until(20*time.Millisecond, 5*time.Millisecond, func() (bool, error) { n++; return false, nil })
	if !errors.Is(err, ErrTimeout) || n < 2 {
		t.Errorf("Until: %v after %d checks, want a timeout after a few", err, n)
	}
	boom := errors.New("boom")
	if err := Until(time.Second, time.Millisecond, func() (bool, error) { return false, boom }); err != boom {
		t.Errorf("Until: %v, want the check's error", err)
	}
}

// backend records what a real go-smtp server received.
type backend struct{ got chan string }

func (b *backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{b: b}, nil }

type session struct {
	b     *backend
	from  string
	rcpts []string
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasSuffix(to, "@foreign.example") {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.b.got <- s.from + " " + strings.Join(s.rcpts, ",") + " " + string(b)
	return err
}
func (s *session) Reset()        { s.rcpts = nil }
func (s *session) Logout() error { return nil }

func TestSend(t *testing.T) {
	b := &backend{got: make(chan string, 2)}
	srv := smtp.NewServer(b)
	srv.Domain = "mx.test"
	srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	msg := []byte("Subject: hi\r\n\r\nhello\r\n")
	reply, err := Send(l.Addr().String(), "client.test", "s@outside.example", []string{"a@local.example", "b@local.example"}, msg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if reply == "" {
		t.Errorf("Send: no reply to the end of the data")
	}
	if got := <-b.got; got != "s@outside.example a@local.example,b@local.example "+string(msg) {
		t.Errorf("server got %q", got)
	}
	_, err = Send(l.Addr().String(), "client.test", "s@outside.example", []string{"x@foreign.example"}, msg)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(err.Error(), "RCPT TO:<x@foreign.example>") {
		t.Errorf("Send to a foreign domain: %v, want the 554 5.7.1 of RCPT", err)
	}
}

func TestQueueID(t *testing.T) {
	for reply, want := range map[string]string{
		"2.0.0 Ok: queued as 4dQ1Zk3XyQz9v": "4dQ1Zk3XyQz9v",
		"Ok: queued as 3F2A81C0D2":          "3F2A81C0D2",
		"OK: message accepted":              "",
	} {
		if got := QueueID(reply); got != want {
			t.Errorf("QueueID(%q) = %q, want %q", reply, got, want)
		}
	}
}
