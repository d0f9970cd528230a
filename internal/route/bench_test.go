package route_test

import (
	"bytes"
	"fmt"
	"testing"

	"quietmx/internal/route"
	"quietmx/internal/rules"
)

// BenchmarkResolve routes one recipient through a 10,000-alias rule file,
// once per step of the lookup order: the cost grows with the number of map
// lookups (and regexp runs) before the match, not with the number of
// aliases. "rematch=20" puts 20 rematch regexes in front; the recipients
// match none of them (so all 20 run) except "rematch-last", which matches
// the 20th. Compare with
//
//	go test -run '^$' -bench . -benchmem -count 10 ./internal/route/ | tee route.txt
//	benchstat route.txt
func BenchmarkResolve(b *testing.B) {
	const aliases = 10000
	shapes := []struct {
		name, rcpt, key string
	}{
		{"exact", "user5@d5.example", "user5@d5.example"},
		{"extension", "user5+news+2024@d5.example", "user5@d5.example"},
		{"domain-less", "role11+x@elsewhere.example", "role11"},
		{"catch-all", "nobody+x@d12.example", "@d12.example"},
		{"default", "nobody+x@elsewhere.example", "default"},
	}
	for _, rematch := range []int{0, 20} {
		set := benchSet(b, aliases, rematch)
		cases := shapes
		if rematch > 0 {
			cases = append(cases[:len(cases):len(cases)], struct{ name, rcpt, key string }{
				"rematch-last", "bounce-42@list19.example.net", "bounces19@example.net",
			})
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("aliases=%d/rematch=%d/%s", aliases, rematch, c.name), func(b *testing.B) {
				// A benchmark that silently takes another path would
				// still look plausible: check the key it routes to.
				if p := route.Resolve(set, c.rcpt); p.Err != nil || p.Key != c.key {
					b.Fatalf("Resolve(%q).Key = %q (err %v), want %q", c.rcpt, p.Key, p.Err, c.key)
				}
				for b.Loop() {
					route.Resolve(set, c.rcpt)
				}
			})
		}
	}
}

// benchSet parses a rule file with n aliases (full addresses over 50
// domains, domain-less keys, catch-alls), an extension, a default, and
// rematch regexes of the shape a mailing-list setup uses.
func benchSet(b *testing.B, n, rematch int) *rules.Set {
	var s bytes.Buffer
	s.WriteString("extension: \"\\\\+\"\n")
	if rematch > 0 {
		s.WriteString("rematch:\n")
		for i := range rematch {
			fmt.Fprintf(&s, "  \"^bounce-[0-9]+@list%d\\\\.example\\\\.net$\": bounces%d@example.net\n", i, i)
		}
	}
	s.WriteString("aliases:\n")
	for i := range n {
		switch i % 10 {
		case 1:
			fmt.Fprintf(&s, "  role%d: {type: maildir, value: /var/mail/vmail/role%d/Maildir}\n", i, i)
		case 2:
			fmt.Fprintf(&s, "  \"@d%d.example\": {type: maildir, value: /var/mail/vmail/catchall%d/Maildir}\n", i, i)
		default:
			fmt.Fprintf(&s, "  user%d@d%d.example: {type: maildir, value: /var/mail/vmail/user%d/Maildir}\n", i, i%50, i)
		}
	}
	for i := range rematch {
		fmt.Fprintf(&s, "  bounces%d@example.net: {type: discard}\n", i)
	}
	s.WriteString("default: {type: maildir, value: /var/mail/vmail/default/Maildir}\n")
	set, findings := rules.Parse("bench.yaml", s.Bytes())
	if set == nil {
		b.Fatal(findings.Err())
	}
	return set
}
