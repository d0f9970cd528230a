package route_test

import (
	"errors"
	"slices"
	"testing"

	"quietmx/internal/route"
	"quietmx/internal/rules"
)

// A rule file that refuses some addresses at RCPT time. Delivery passes
// over the reject keys, as if they did not exist.
const rejecting = `
extension: "\\+"
rematch: {"^retired-": old@example.com}
aliases:
  old@example.com: {type: reject, text: "This address is no longer in use"}
  foo@example.com: {type: reject}
  foo: {type: maildir, value: /m/foo}
  spam@example.com: {type: reject}
  "@example.com": {type: maildir, value: /m/catchall}
  to-old: {type: alias, value: old@example.com}
  to-to-old: {type: alias, value: to-old@example.org}
  me: {type: maildir, value: /m/me}
  ok-alias: {type: alias, value: me@example.org}
  gone@other.example: {type: reject}
default: {type: maildir, value: /m/default}
`

func TestRejectAtRCPTAndDelivery(t *testing.T) {
	set := mustParse(t, rejecting)
	tests := []struct {
		rcpt string
		// at RCPT time
		reply, refusedKey string
		via               []string
		// at delivery, when accepted anyway
		deliveryKey, maildir string
		passed               []string // keys passed over
	}{
		{rcpt: "old@example.com", reply: "550 5.1.1 This address is no longer in use", refusedKey: "old@example.com",
			deliveryKey: "@example.com", maildir: "/m/catchall", passed: []string{"old@example.com"}},
		{rcpt: "OLD@Example.com", reply: "550 5.1.1 This address is no longer in use", refusedKey: "old@example.com",
			deliveryKey: "@example.com", maildir: "/m/catchall", passed: []string{"old@example.com"}},
		{rcpt: "retired-1@x.example", reply: "550 5.1.1 This address is no longer in use", refusedKey: "old@example.com",
			deliveryKey: "@example.com", maildir: "/m/catchall", passed: []string{"old@example.com"}},
		// Shortening reaches the reject first; delivery goes on to the
		// local part.
		{rcpt: "foo+x@example.com", reply: "550 5.1.1 User unknown", refusedKey: "foo@example.com",
			deliveryKey: "foo", maildir: "/m/foo", passed: []string{"foo@example.com"}},
		{rcpt: "foo@example.org", deliveryKey: "foo", maildir: "/m/foo"},
		// Through aliases: the whole plan is the reject.
		{rcpt: "to-old@example.org", reply: "550 5.1.1 This address is no longer in use", refusedKey: "old@example.com", via: []string{"old@example.com"},
			deliveryKey: "to-old", maildir: "/m/catchall"},
		{rcpt: "to-to-old@example.org", reply: "550 5.1.1 This address is no longer in use", refusedKey: "old@example.com", via: []string{"to-old@example.org", "old@example.com"},
			deliveryKey: "to-to-old", maildir: "/m/catchall"},
		{rcpt: "gone@other.example", reply: "550 5.1.1 User unknown", refusedKey: "gone@other.example",
			deliveryKey: "default", maildir: "/m/default", passed: []string{"gone@other.example"}},
		{rcpt: "ok-alias@x.example", deliveryKey: "ok-alias", maildir: "/m/me"},
		{rcpt: "nobody@example.com", deliveryKey: "@example.com", maildir: "/m/catchall"},
	}
	for _, tt := range tests {
		t.Run(tt.rcpt, func(t *testing.T) {
			at := route.AtRCPT(set, tt.rcpt)
			if got := at.RejectReply(); got != tt.reply {
				t.Errorf("AtRCPT.RejectReply() = %q, want %q (err %v)", got, tt.reply, at.Err)
			}
			if tt.reply != "" {
				if at.Refusal.Key != tt.refusedKey || !slices.Equal(at.Refusal.Via, tt.via) {
					t.Errorf("Refusal = key %q via %v, want %q via %v", at.Refusal.Key, at.Refusal.Via, tt.refusedKey, tt.via)
				}
			}
			p := route.Resolve(set, tt.rcpt)
			if p.Err != nil || p.Key != tt.deliveryKey || len(p.Actions) != 1 || p.Actions[0].Action.Value != tt.maildir {
				t.Fatalf("Resolve: key %q actions %+v err %v, want key %q into %s", p.Key, p.Actions, p.Err, tt.deliveryKey, tt.maildir)
			}
			// Delivery's plan says the message was refusable, for its log.
			if p.RejectReply() != tt.reply {
				t.Errorf("Resolve.RejectReply() = %q, want %q", p.RejectReply(), tt.reply)
			}
			var passed []string
			for _, st := range p.Steps {
				if st.Passed {
					if st.Found {
						t.Errorf("step %q both passed over and found", st.Key)
					}
					passed = append(passed, st.Key)
				}
			}
			if !slices.Equal(passed, tt.passed) {
				t.Errorf("passed over %v, want %v", passed, tt.passed)
			}
		})
	}
}

// A reject default refuses every unknown address at RCPT time; one
// accepted anyway has no route at delivery, so it is rescued (never lost,
// never bounced).
func TestRejectDefault(t *testing.T) {
	set := mustParse(t, "aliases:\n  me: {type: maildir, value: /m/me}\ndefault: {type: reject}\nrescue: /r\n")
	at := route.AtRCPT(set, "nobody@example.com")
	if at.RejectReply() != "550 5.1.1 User unknown" || at.Refusal.Key != "default" {
		t.Fatalf("AtRCPT: %+v", at)
	}
	p := route.Resolve(set, "nobody@example.com")
	if !errors.Is(p.Err, route.ErrNoRoute) || p.Refusal == nil {
		t.Errorf("Resolve: err %v refusal %v, want no route (rescue) and the refusal", p.Err, p.Refusal)
	}
	last := p.Steps[len(p.Steps)-1]
	if last.Kind != "default" || last.Found || !last.Passed {
		t.Errorf("last step %+v, want the default passed over", last)
	}
	if route.AtRCPT(set, "me@example.com").Refusal != nil || route.Resolve(set, "me@example.com").Refusal != nil {
		t.Errorf("a mailbox is refused")
	}
}

// A reject reached through an alias among other actions cannot be decided
// at RCPT time: the policy service accepts (no Refusal, ErrRejectMixed),
// check reports it (ExpandEntry), and delivery passes over the reject.
func TestRejectMixedThroughAlias(t *testing.T) {
	set := mustParse(t, `
aliases:
  gone: {type: reject}
  both: [{type: maildir, value: /m/both}, {type: alias, value: gone@example.com}]
  onerr: {type: maildir, value: /m/onerr, onerror: {type: alias, value: gone@example.com}}
  ok: {type: alias, value: gone@example.com}
default: {type: maildir, value: /m/default}
`)
	for _, key := range []string{"both", "onerr"} {
		at := route.AtRCPT(set, key+"@example.com")
		if !errors.Is(at.Err, route.ErrRejectMixed) || at.Refusal != nil || at.RejectReply() != "" {
			t.Errorf("%s: AtRCPT err %v refusal %v, want ErrRejectMixed and no refusal", key, at.Err, at.Refusal)
		}
		if _, err := route.ExpandEntry(set, key, set.Aliases[key]); !errors.Is(err, route.ErrRejectMixed) {
			t.Errorf("%s: ExpandEntry err %v, want ErrRejectMixed", key, err)
		}
	}
	p := route.Resolve(set, "both@example.com")
	if p.Err != nil || len(p.Actions) != 2 || p.Actions[1].Action.Value != "/m/default" || p.Refusal != nil {
		t.Errorf("Resolve(both): %+v err %v", p.Actions, p.Err)
	}
	p = route.Resolve(set, "onerr@example.com")
	if p.Err != nil || len(p.Actions) != 1 || p.Actions[0].OnError[0].Action.Value != "/m/default" {
		t.Errorf("Resolve(onerr): %+v err %v", p.Actions, p.Err)
	}
	// The whole plan through an alias, and the reject entry itself, are fine.
	for _, key := range []string{"ok", "gone"} {
		if _, err := route.ExpandEntry(set, key, set.Aliases[key]); err != nil {
			t.Errorf("%s: ExpandEntry: %v", key, err)
		}
	}
}

// Passing over a reject at delivery can lead into a loop that the policy
// service never sees: check must still find it.
func TestRejectLoopOnlyAtDelivery(t *testing.T) {
	set := mustParse(t, `
aliases:
  a: {type: alias, value: b@x.example}
  b@x.example: {type: reject}
  "@x.example": {type: alias, value: a@y.example}
default: {type: discard}
`)
	if at := route.AtRCPT(set, "a@y.example"); at.Refusal == nil {
		t.Errorf("AtRCPT: %+v, want refused", at)
	}
	if p := route.Resolve(set, "a@y.example"); !errors.Is(p.Err, route.ErrAliasLoop) {
		t.Errorf("Resolve err %v, want an alias loop (rescue)", p.Err)
	}
	if _, err := route.ExpandEntry(set, "a", set.Aliases["a"]); !errors.Is(err, route.ErrAliasLoop) {
		t.Errorf("ExpandEntry err %v, want the delivery-time loop", err)
	}
}

// Without reject entries the policy's answer and delivery's plan agree, and
// Match stops at a reject like the policy service.
func TestRejectMatchAndNoReject(t *testing.T) {
	set := mustParse(t, rejecting)
	if e, key := route.Match(set, "spam@example.com"); key != "spam@example.com" || e.Rejection() == nil {
		t.Errorf("Match = %q", key)
	}
	plain := mustParse(t, precedence)
	for _, rcpt := range []string{"foo+bar@example.com", "nobody@else.example", "jrh"} {
		at, p := route.AtRCPT(plain, rcpt), route.Resolve(plain, rcpt)
		if at.Refusal != nil || p.Refusal != nil || at.Key != p.Key {
			t.Errorf("%s: AtRCPT key %q, Resolve key %q", rcpt, at.Key, p.Key)
		}
	}
}

// An invalid reject (its text is bad) is not a refusal anywhere: the file
// is invalid, and should it be used anyway the action fails into rescue.
func TestInvalidRejectIsNotARefusal(t *testing.T) {
	set, fs := rules.Parse("r.yaml", []byte("aliases:\n  x: {type: reject, text: \"a\\nb\"}\n"))
	if !fs.HasErrors() {
		t.Fatalf("want an error: %v", fs)
	}
	if at := route.AtRCPT(set, "x@example.com"); at.Refusal != nil {
		t.Errorf("refused with an invalid reject")
	}
	if p := route.Resolve(set, "x@example.com"); p.Key != "x" || p.Actions[0].Action.Problem == "" {
		t.Errorf("Resolve: %+v", p)
	}
}
