package explain_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"quietmx/internal/delivery"
	"quietmx/internal/explain"
	"quietmx/internal/rules"
)

// Every key delivers into its own Maildir, so where a message lands names
// the route delivery took.
const ruleTemplate = `
extension: "(?:\\+|--)"
rematch:
  "^list-[a-z]+@d1\\.example$": lists@d1.example
  "^old@": new@d2.example
aliases:
  a@d1.example=: {type: maildir, value: DIR/a-exact}
  a@d1.example: {type: maildir, value: DIR/a-d1}
  a: {type: maildir, value: DIR/a-any}
  b+x@d2.example: {type: maildir, value: DIR/bx-d2}
  b: [{type: maildir, value: DIR/b-any}, {type: alias, value: c@d3.example}]
  c@d3.example: {type: maildir, value: DIR/c-d3}
  lists@d1.example: {type: maildir, value: DIR/lists}
  new@d2.example: {type: maildir, value: DIR/new-d2}
  "@d2.example": {type: maildir, value: DIR/catch-d2}
  solo@.: {type: maildir, value: DIR/solo}
  drop: []
  pipe: {type: pipe, cmd: /bin/false, onerror: {type: maildir, value: DIR/onerror}}
default: {type: maildir, value: DIR/default}
`

func TestExplainAgreesWithDelivery(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(ruleTemplate, "DIR", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := rules.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	locals := []string{"a", "A", "b", "c", "old", "list-go", "solo", "drop", "pipe", "zz", "a+q", "b+x", "b+x+y", "a--z", "c+1", "+t", "b--x"}
	domains := []string{"@d1.example", "@D2.example", "@d3.example", "@other.example", ""}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		addr := locals[rng.IntN(len(locals))] + domains[rng.IntN(len(domains))]
		rep := explain.Explain(loaded.Set, "s@x", []string{addr}, "", "")[0]
		var want []string
		var walk func(steps []explain.Step)
		walk = func(steps []explain.Step) {
			for _, s := range steps {
				if s.Type == rules.TypePipe {
					walk(s.OnError) // /bin/false always fails into onerror
					continue
				}
				if s.Type == rules.TypeMaildir {
					want = append(want, strings.TrimPrefix(s.Summary, "maildir:"+dir+"/"))
				}
			}
		}
		walk(rep.Actions)
		before := landed(t, dir)
		res := delivery.Run(context.Background(), delivery.Config{RulesPath: path}, delivery.Request{Sender: "s@x", Recipients: []string{addr}, Message: []byte("Subject: x\n\nhi\n")})
		if res.Outcome == delivery.Deferred || res.Records[0].Key != rep.Key || res.Records[0].Recipient != rep.Recipient {
			t.Fatalf("%q: delivery key %q rcpt %q (%v), explain key %q rcpt %q", addr, res.Records[0].Key, res.Records[0].Recipient, res.Outcome, rep.Key, rep.Recipient)
		}
		got := diff(before, landed(t, dir))
		slices.Sort(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%q: delivery wrote to %v, explain said %v", addr, got, want)
		}
	}
}

// landed counts the messages in each Maildir's new/ under dir.
func landed(t *testing.T, dir string) map[string]int {
	t.Helper()
	out := map[string]int{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if n, err := os.ReadDir(filepath.Join(dir, e.Name(), "new")); err == nil {
			out[e.Name()] = len(n)
		}
	}
	return out
}

func diff(before, after map[string]int) []string {
	var out []string
	for k, n := range after {
		for i := before[k]; i < n; i++ {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// A rejected address: explain says it is refused at RCPT, and where an
// accepted copy would go (delivery passes over the reject).
func TestExplainRefusal(t *testing.T) {
	tests := []struct {
		name, mode, addr string
		want             []string
	}{
		{"refuse", "refuse", "old@example.com", []string{
			`refused at RCPT (550 5.1.1 gone) by key "old@example.com": the sending server is told`,
			`PASS "old@example.com"`, `HIT  "old"`, "matched: old"}},
		{"log", "log", "old@example.com", []string{
			`would be refused at RCPT (550 5.1.1 gone) by key "old@example.com"; reject_mode log accepts it`,
			`HIT  "old"`}},
		{"not rejected", "refuse", "me@example.com", []string{`HIT  "me"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "reject_mode: " + tt.mode + `
aliases:
  old@example.com: {type: reject, text: gone}
  old: {type: maildir, value: /m/old}
  me: {type: maildir, value: /m/me}
`
			set, fs := rules.Parse("r.yaml", []byte(src))
			if set == nil || fs.HasErrors() {
				t.Fatalf("Parse: %v", fs)
			}
			reports := explain.Explain(set, "", []string{tt.addr}, "/usr/sbin/sendmail", "")
			var b strings.Builder
			if err := explain.Text(&b, reports); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("explain %s lacks %q:\n%s", tt.addr, w, b.String())
				}
			}
			if tt.name == "not rejected" && (reports[0].Refusal != "" || strings.Contains(b.String(), "RCPT")) {
				t.Errorf("a delivered address is reported refused:\n%s", b.String())
			}
		})
	}
}
