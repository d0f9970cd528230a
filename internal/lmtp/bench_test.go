package lmtp

import (
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// BenchmarkLMTP is the daemon's own cost per message: 4 KiB messages over
// LMTP from parallel connections (as Postfix's lmtp clients), each stored
// in a Maildir (fsyncs included) and logged.
func BenchmarkLMTP(b *testing.B) {
	e := start(b, "default: {type: maildir, value: DIR/box}\n", Config{})
	body := wireMsg + strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstu\r\n", 4096/70)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("unix", e.socket)
		if err != nil {
			b.Error(err)
			return
		}
		c := smtp.NewClientLMTP(conn)
		defer c.Close()
		if err := c.Hello("postfix.test"); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if err := c.Mail("s@example.org", nil); err != nil {
				b.Error(err)
				return
			}
			if err := c.Rcpt("a@x", nil); err != nil {
				b.Error(err)
				return
			}
			w, err := c.Data()
			if err != nil {
				b.Error(err)
				return
			}
			w.Write([]byte(body))
			if _, err := w.CloseWithLMTPResponse(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
