package rules_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"quietmx/internal/rules"
)

// The agent loads its rule file once per message (Postfix execs it per
// delivery), so loading is on every message's path. These benchmarks size
// the two ways in: parsing the YAML, and loading the compiled form that
// `altpostlocal compile` writes beside it. Sizes go past the 2,000
// aliases to 10,000, to show how the cost grows. Compare with
//
//	go test -run '^$' -bench . -benchmem -count 10 ./internal/rules/ | tee rules.txt
//	benchstat rules.txt

var aliasCounts = []int{100, 2000, 10000}

// BenchmarkParse is the cost of a delivery without a usable compiled form.
func BenchmarkParse(b *testing.B) {
	for _, n := range aliasCounts {
		src := benchRules(n)
		b.Run(fmt.Sprintf("aliases=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				if set, fs := rules.Parse("bench.yaml", src); set == nil {
					b.Fatal(fs.Err())
				}
			}
		})
	}
}

// BenchmarkLoad is rules.Load as the agent calls it: read the YAML and hash
// it, then decode the compiled form whose hash matches ("compiled"), or
// parse the YAML when there is none ("yaml").
func BenchmarkLoad(b *testing.B) {
	for _, n := range aliasCounts {
		src := benchRules(n)
		for _, compiled := range []bool{true, false} {
			name := fmt.Sprintf("aliases=%d/yaml", n)
			if compiled {
				name = fmt.Sprintf("aliases=%d/compiled", n)
			}
			b.Run(name, func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "rules.yaml")
				if err := os.WriteFile(path, src, 0o644); err != nil {
					b.Fatal(err)
				}
				if compiled {
					if err := rules.Compile(path, src); err != nil {
						b.Fatal(err)
					}
				}
				// A benchmark of the wrong path would look plausible:
				// check which one Load takes.
				if l, err := rules.Load(path); err != nil || l.Compiled != compiled {
					b.Fatalf("Load: compiled=%v, err=%v; want compiled=%v", l.Compiled, err, compiled)
				}
				b.SetBytes(int64(len(src)))
				for b.Loop() {
					if _, err := rules.Load(path); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchRules returns a rule file shaped like a large appliance's: n
// aliases, mostly full addresses spread over 50 domains, with domain-less
// keys, catch-alls, action lists and an onerror mixed in, 20 rematch
// regexes and an extension.
func benchRules(n int) []byte {
	var s bytes.Buffer
	s.WriteString("extension: \"\\\\+\"\nrematch:\n")
	for i := range 20 {
		fmt.Fprintf(&s, "  \"^bounce-[0-9]+@list%d\\\\.example\\\\.net$\": bounces%d@example.net\n", i, i)
	}
	s.WriteString("aliases:\n")
	for i := range n {
		switch i % 10 {
		case 1:
			fmt.Fprintf(&s, "  role%d: {type: maildir, value: /var/mail/vmail/role%d/Maildir}\n", i, i)
		case 2:
			fmt.Fprintf(&s, "  \"@d%d.example\": {type: maildir, value: /var/mail/vmail/catchall%d/Maildir}\n", i, i)
		case 3:
			fmt.Fprintf(&s, "  list%d@d%d.example: [{type: maildir, value: /var/mail/vmail/l%d/Maildir}, {type: forward, value: [a%d@example.net, b%d@example.net]}]\n", i, i%50, i, i, i)
		case 4:
			fmt.Fprintf(&s, "  filter%d@d%d.example: {type: pipe, cmd: /usr/local/bin/filter, args: [\"${recipient}\"], timeout: 30, onerror: {type: maildir, value: /var/mail/vmail/f%d/Maildir}}\n", i, i%50, i)
		default:
			fmt.Fprintf(&s, "  user%d@d%d.example: {type: maildir, value: /var/mail/vmail/user%d/Maildir}\n", i, i%50, i)
		}
	}
	s.WriteString("default: {type: maildir, value: /var/mail/vmail/default/Maildir}\nrescue: /var/mail/vmail/rescue\n")
	return s.Bytes()
}
