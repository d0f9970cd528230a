package policy_test

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"quietmx/internal/policy"
	"quietmx/internal/rules"
)

// BenchmarkRCPT is what the policy check adds to one RCPT TO: a request
// written, decided against a 10,000-alias rule file and answered over a
// unix socket, on one kept-open connection as Postfix uses it. The target
// is at most 1 ms (median). Compare with
//
//	go test -run '^$' -bench RCPT -count 10 ./internal/policy/ | tee policy.txt
//	benchstat policy.txt
func BenchmarkRCPT(b *testing.B) {
	const aliases = 10000
	var src strings.Builder
	src.WriteString("extension: \"\\\\+\"\naliases:\n")
	for i := range aliases {
		switch {
		case i%10 == 0: // one address in ten is refused
			fmt.Fprintf(&src, "  user%d@d%d.example: {type: reject, text: \"This address is no longer in use\"}\n", i, i%50)
		case i%100 == 1:
			fmt.Fprintf(&src, "  \"@x%d.example\": {type: maildir, value: /var/mail/vmail/c%d/Maildir}\n", i, i)
		default:
			fmt.Fprintf(&src, "  user%d@d%d.example: {type: maildir, value: /var/mail/vmail/u%d/Maildir}\n", i, i%50, i)
		}
	}
	src.WriteString("default: {type: reject}\n")
	set := mustParse(b, src.String())
	if n := len(set.Aliases); n != aliases {
		b.Fatalf("%d aliases", n)
	}
	srv := &policy.Server{Rules: func() *rules.Set { return set }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	f := start(b, srv)
	cases := []struct{ name, rcpt, want string }{
		{"reject", "user5000+news@d0.example", "550 5.1.1 This address is no longer in use"},
		{"mailbox", "user5005+news@d5.example", "DUNNO"},
		{"reject-default", "nobody@elsewhere.example", "550 5.1.1 User unknown"},
	}
	for _, c := range cases {
		b.Run(fmt.Sprintf("aliases=%d/%s", aliases, c.name), func(b *testing.B) {
			cl := f.dial(b)
			req := rcpt(c.rcpt)
			// A benchmark that silently takes another path would still
			// look plausible: check the answer first.
			if got := cl.ask(b, req); got != c.want {
				b.Fatalf("%s: %q, want %q", c.rcpt, got, c.want)
			}
			for b.Loop() {
				cl.ask(b, req)
			}
		})
	}
}
