package route_test

import (
	"strconv"
	"strings"
	"testing"

	"quietmx/internal/route"
	"quietmx/internal/rules"
)

func mustParse(t testing.TB, src string) *rules.Set {
	t.Helper()
	set, fs := rules.Parse("test.yaml", []byte(src))
	if set == nil {
		t.Fatalf("parse: %v", fs.Err())
	}
	return set
}

// A rule file where every key's action names the key, so the matched key is
// visible in the plan.
const precedence = `
extension: "\\+"
aliases:
  exact@example.com=: {type: maildir, value: /m/exact-only}
  exact@example.com: {type: maildir, value: /m/exact-plain}
  foo+bar@example.com: {type: maildir, value: /m/foo+bar@example.com}
  foo@example.com: {type: maildir, value: /m/foo@example.com}
  abuse: {type: maildir, value: /m/abuse}
  info+x: {type: maildir, value: /m/info+x}
  info: {type: maildir, value: /m/info}
  jrh@.: {type: maildir, value: /m/jrh@.}
  jrh: {type: maildir, value: /m/jrh}
  bare=: {type: maildir, value: /m/bare=}
  "@example.com": {type: maildir, value: /m/catchall-example.com}
  real@example.com: {type: maildir, value: /m/real}
  "+tag": {type: maildir, value: /m/plus-tag}
  Upper@example.com: {type: maildir, value: /m/upper}
default: {type: maildir, value: /m/default}
`

func TestResolvePrecedence(t *testing.T) {
	set := mustParse(t, precedence)
	tests := []struct {
		rcpt, key string
	}{
		{"exact@example.com", "exact@example.com="},
		{"EXACT@Example.COM", "exact@example.com="},
		{"exact+x@example.com", "exact@example.com"}, // addr= is exact-only
		{"foo+bar+baz@example.com", "foo+bar@example.com"},
		{"foo+baz@example.com", "foo@example.com"},
		{"foo@example.com", "foo@example.com"},
		{"foo@other.org", "default"},   // domain part must match for domain keys
		{"abuse@example.com", "abuse"}, // domain-less key beats the catch-all
		{"abuse@any.example", "abuse"},
		{"abuse+spam@any.example", "abuse"},
		{"info+x+y@d.example", "info+x"},
		{"info+z@d.example", "info"},
		{"nobody@example.com", "@example.com"},       // catch-all after every local-part lookup
		{"real@example.com", "real@example.com"},     // catch-all does not swallow real keys
		{"real+tag@example.com", "real@example.com"}, // shortening reaches real@ before the catch-all
		{"nobody@else.example", "default"},
		{"jrh", "jrh"},                        // whole address (domain-less key) comes first
		{"bare", "bare="},                     // addr= for a bare user too
		{"JRH", "jrh"},                        // case-insensitive
		{"+tag@else.example", "+tag"},         // never an empty local part: tries +tag, not @else.example
		{"upper@example.com", "@example.com"}, // an uppercase key never matches
	}
	for _, tt := range tests {
		t.Run(tt.rcpt, func(t *testing.T) {
			p := route.Resolve(set, tt.rcpt)
			if p.Err != nil {
				t.Fatalf("Resolve(%q).Err = %v", tt.rcpt, p.Err)
			}
			if p.Key != tt.key {
				t.Errorf("Resolve(%q).Key = %q, want %q\nsteps: %+v", tt.rcpt, p.Key, tt.key, p.Steps)
			}
		})
	}
}

func TestBareUserOnlyTriesAtDot(t *testing.T) {
	set := mustParse(t, `
extension: "\\+"
aliases:
  solo@.: {type: discard}
  "@.": {type: discard}
  x: {type: discard}
default: {type: nothing}
`)
	tests := []struct{ rcpt, key string }{
		{"solo", "solo@."},
		{"solo+ext", "default"}, // no shortening for a bare user
		{"x", "x"},
		{"x+y", "default"},
	}
	for _, tt := range tests {
		p := route.Resolve(set, tt.rcpt)
		if p.Key != tt.key {
			t.Errorf("Resolve(%q).Key = %q, want %q (steps %+v)", tt.rcpt, p.Key, tt.key, p.Steps)
		}
	}
}

func TestExtensionExamplesFromSpec(t *testing.T) {
	tests := []struct {
		ext, user string
		want      []string
	}{
		{`\+`, "foo+bar+baz", []string{"foo+bar", "foo"}},
		{`(?:uk|\+)`, "haruka", []string{"har"}},
		{`(?:uk|\+)`, "yuka", []string{"y"}},
		{`[+-]`, "a-b+c", []string{"a-b", "a"}},
		{`(?:_aka_|-)`, "john_aka_jh-x", []string{"john_aka_jh", "john"}},
		{`\+`, "+tag", nil},
		{`\+`, "plain", nil},
		{`\+`, "a++", []string{"a+", "a"}},
	}
	for _, tt := range tests {
		p, err := rules.CompilePattern(tt.ext)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for s := range route.Shortenings(p, tt.user) {
			got = append(got, s)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("Shortenings(%q, %q) = %q, want %q", tt.ext, tt.user, got, tt.want)
		}
	}
}

func TestSpecExampleHarukaResolvesAsHar(t *testing.T) {
	set := mustParse(t, `
extension: "(?:uk|\\+)"
aliases:
  har@example.com: {type: discard}
`)
	if p := route.Resolve(set, "haruka@example.com"); p.Key != "har@example.com" {
		t.Fatalf("haruka@example.com matched %q, want har@example.com", p.Key)
	}
}

func TestRematch(t *testing.T) {
	set := mustParse(t, `
rematch:
  "^list-.*@example\\.com$": lists@example.com
  "^list-": never@example.com
  "spam": trash@example.com
aliases:
  lists@example.com: {type: maildir, value: /m/lists}
  trash@example.com: {type: discard}
  list-x@example.com: {type: maildir, value: /m/never-reached}
default: {type: nothing}
`)
	tests := []struct{ rcpt, rewritten, key string }{
		{"list-go@example.com", "lists@example.com", "lists@example.com"}, // first in file order wins
		{"list-x@example.com", "lists@example.com", "lists@example.com"},  // rematch runs before lookup
		{"nospamhere@x.org", "trash@example.com", "trash@example.com"},    // unanchored
		{"LIST-go@example.com", "LIST-go@example.com", "default"},         // case-sensitive like the original
		{"other@x.org", "other@x.org", "default"},
	}
	for _, tt := range tests {
		p := route.Resolve(set, tt.rcpt)
		if p.Rewritten != tt.rewritten || p.Key != tt.key {
			t.Errorf("Resolve(%q) = (%q, %q), want (%q, %q)", tt.rcpt, p.Rewritten, p.Key, tt.rewritten, tt.key)
		}
	}
}

func TestAliasExpansion(t *testing.T) {
	set := mustParse(t, `
aliases:
  a: [{type: alias, value: b@x.org}, {type: maildir, value: /m/a}]
  b: {type: alias, value: c@x.org}
  c: {type: maildir, value: /m/c}
  loop1: {type: alias, value: loop2@x.org}
  loop2: {type: alias, value: loop1@x.org}
  self: {type: alias, value: self@x.org}
  toundef: {type: alias, value: nowhere@x.org}
  onerr: {type: pipe, cmd: /bin/false, onerror: {type: alias, value: c@x.org}}
`)
	p := route.Resolve(set, "a@x.org")
	if p.Err != nil {
		t.Fatal(p.Err)
	}
	var got []string
	for _, pl := range p.Actions {
		got = append(got, pl.Action.Summary()+"<"+strings.Join(pl.Via, ">"))
	}
	if want := "maildir:/m/c<b@x.org>c@x.org,maildir:/m/a<"; strings.Join(got, ",") != want {
		t.Errorf("actions = %q, want %q", strings.Join(got, ","), want)
	}
	for _, rcpt := range []string{"loop1@x.org", "self@x.org"} {
		if p := route.Resolve(set, rcpt); p.Err == nil || !strings.Contains(p.Err.Error(), "alias loop") {
			t.Errorf("Resolve(%q).Err = %v, want an alias loop", rcpt, p.Err)
		}
	}
	if p := route.Resolve(set, "toundef@x.org"); p.Err == nil {
		t.Errorf("alias to an unroutable address: want a routing error")
	}
	p = route.Resolve(set, "onerr@x.org")
	if p.Err != nil || len(p.Actions) != 1 || len(p.Actions[0].OnError) != 1 || p.Actions[0].OnError[0].Action.Value != "/m/c" {
		t.Errorf("onerror alias not expanded: %+v err=%v", p.Actions, p.Err)
	}
}

func TestAliasHopLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("aliases:\n")
	for i := 0; i < 30; i++ {
		b.WriteString("  h" + strconv.Itoa(i) + ": {type: alias, value: h" + strconv.Itoa(i+1) + "@x}\n")
	}
	b.WriteString("  h30: {type: discard}\n")
	set := mustParse(t, b.String())
	if p := route.Resolve(set, "h10@x"); p.Err != nil {
		t.Errorf("20 hops must be allowed: %v", p.Err)
	}
	if p := route.Resolve(set, "h0@x"); p.Err == nil {
		t.Errorf("30 hops: want an error")
	}
}

func TestNoDefaultIsARoutingError(t *testing.T) {
	set := mustParse(t, "aliases:\n  a: {type: discard}\n")
	p := route.Resolve(set, "b@x")
	if p.Err == nil || p.Key != "" {
		t.Fatalf("want a routing error, got key %q err %v", p.Key, p.Err)
	}
}

func TestOnlyDefault(t *testing.T) {
	set := mustParse(t, "default: {type: maildir, value: /m/all}\n")
	for _, rcpt := range []string{"a@b", "x", "@d"} {
		if p := route.Resolve(set, rcpt); p.Key != "default" || p.Err != nil {
			t.Errorf("Resolve(%q) = %q, %v; want default", rcpt, p.Key, p.Err)
		}
	}
}

func FuzzResolve(f *testing.F) {
	set := mustParse(f, precedence)
	weird := mustParse(f, `extension: "(?:uk|\\+|-+|x*y)"`+"\ndefault: []\n")
	refusing := mustParse(f, rejecting)
	for _, s := range []string{"foo+bar+baz@example.com", "+", "@", "a@b@c", "++++@x", "haruka@example.com", "\xff@\xfe", "x-y-z---@d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rcpt string) {
		for _, s := range []*rules.Set{set, weird, refusing} {
			if at := route.AtRCPT(s, rcpt); at.Refusal != nil && (at.Err != nil || at.RejectReply() == "") {
				t.Fatalf("AtRCPT(%q): refusal %+v with err %v", rcpt, at.Refusal, at.Err)
			}
			p := route.Resolve(s, rcpt)
			if p.Err == nil && p.Key == "" {
				t.Fatalf("Resolve(%q): no key and no error", rcpt)
			}
			if len(p.Steps) > 4*len(rcpt)+10 {
				t.Fatalf("Resolve(%q): %d steps", rcpt, len(p.Steps))
			}
		}
	})
}
