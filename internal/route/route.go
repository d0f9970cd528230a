// Package route decides, without side effects, which actions a recipient
// gets: rematch, then the lookup order of the original AltPostLocal, then
// alias expansion. Delivery and `altpostlocal explain` both call Resolve, so
// what explain prints is what delivery does.
//
// REJECT
// An entry whose only action is reject is decided at RCPT time by the
// policy service (AtRCPT), which stops at it and refuses the recipient.
// Should a message for it be accepted anyway (the policy service was
// unreachable, or reject_mode is log), delivery (Resolve) passes over that
// key as if it did not exist and routes on: later lookups, the catch-all,
// default, else rescue. Accepted mail is never lost or bounced.
package route

import (
	"errors"
	"fmt"
	"strings"

	"quietmx/internal/rules"
)

// Errors that make a recipient unroutable (the message goes to rescue).
var (
	ErrNoRoute   = errors.New("no key matched and there is no default")
	ErrAliasLoop = errors.New("alias loop")
	// ErrRejectMixed: an alias leads to a reject inside a plan that has
	// other actions (or from an onerror), so the refusal cannot be decided
	// before they run. Parsing refuses the direct forms; this is the one
	// only expansion can see. The policy service then accepts.
	ErrRejectMixed = errors.New("reject reached through an alias must be the whole plan")
)

// Step is one thing Resolve tried, in order.
type Step struct {
	Kind  string `json:"kind"`          // "rematch", "lookup" or "default"
	Key   string `json:"key"`           // key looked up, or regexp tested
	Found bool   `json:"found"`         // the key exists and was used, or the regexp matched
	Why   string `json:"why,omitempty"` // which rule of the lookup order this is
	// Passed: the key exists but only rejects at RCPT time, so delivery
	// passed over it (Found is false).
	Passed bool `json:"passed,omitempty"`
}

// Planned is an action to run, with the alias chain that led to it and its
// error handler already expanded.
type Planned struct {
	Action  *rules.Action `json:"action"`
	Via     []string      `json:"via,omitempty"` // alias addresses followed to reach it
	OnError []Planned     `json:"onerror,omitempty"`
}

// Plan is the routing decision for one recipient.
type Plan struct {
	Recipient string    `json:"recipient"` // as the envelope gave it
	Rewritten string    `json:"rewritten"` // after rematch: what ${recipient} means
	Steps     []Step    `json:"steps"`     // every lookup, in order
	Key       string    `json:"key"`       // the key that matched, "default", or ""
	Actions   []Planned `json:"actions"`   // empty and Err nil: drop on purpose
	Err       error     `json:"-"`         // routing error: rescue the message
	ErrText   string    `json:"error,omitempty"`
	// Refusal is set when the policy service refuses this recipient at
	// RCPT time (in reject_mode log it only says so). From Resolve, the
	// rest of the Plan is what delivery does if the message is accepted
	// anyway; from AtRCPT, Actions is the one reject.
	Refusal *Refusal `json:"refusal,omitempty"`
}

// Refusal is a recipient's reject, as the policy service decides it.
type Refusal struct {
	Key    string        `json:"key"`           // the key whose entry rejects ("default" too)
	Via    []string      `json:"via,omitempty"` // alias addresses followed to it
	Action *rules.Action `json:"action"`
}

// Reply is the SMTP reply: "550 5.1.1 <text>".
func (r *Refusal) Reply() string { return r.Action.RejectReply() }

// RejectReply returns the reply that refuses the recipient at RCPT time,
// or "" when it is not refused. The policy service and explain both use it.
func (p *Plan) RejectReply() string {
	if p.Refusal == nil {
		return ""
	}
	return p.Refusal.Reply()
}

// stage says how a reject entry is treated: the policy service stops at
// it; delivery passes over it.
type stage int

const (
	atDelivery stage = iota
	atRCPT
)

// Resolve routes one recipient for delivery. It never fails outright: a
// routing error is returned in Plan.Err with the steps tried so far. When a
// reject entry was passed over, Plan.Refusal says whether the recipient is
// refused at RCPT time (so this message was accepted anyway).
func Resolve(set *rules.Set, recipient string) *Plan {
	p, passed := resolve(set, recipient, atDelivery)
	if passed {
		// Only then can the policy service have decided otherwise.
		p.Refusal = AtRCPT(set, recipient).Refusal
	}
	return p
}

// AtRCPT routes one recipient as the policy service does at RCPT time: it
// stops at a reject entry. Plan.Refusal is set when the whole plan is that
// one reject (directly, or through aliases); then the recipient is refused.
// A plan that reaches a reject among other actions has Err ErrRejectMixed
// and is not refused.
func AtRCPT(set *rules.Set, recipient string) *Plan {
	p, _ := resolve(set, recipient, atRCPT)
	if p.Err != nil || len(p.Actions) != 1 {
		return p
	}
	if pl := p.Actions[0]; pl.Action.Type == rules.TypeReject && pl.Action.Problem == "" {
		key := p.Key
		if n := len(pl.Via); n > 0 {
			_, key = Match(set, pl.Via[n-1]) // the entry that holds the reject
		}
		p.Refusal = &Refusal{Key: key, Via: pl.Via, Action: pl.Action}
	}
	return p
}

func resolve(set *rules.Set, recipient string, st stage) (*Plan, bool) {
	p := &Plan{Recipient: recipient, Rewritten: recipient}
	for _, rm := range set.Rematch {
		hit := rm.Pattern.MatchString(recipient)
		p.Steps = append(p.Steps, Step{Kind: "rematch", Key: rm.Pattern.Source, Found: hit, Why: "rematch → " + rm.Target})
		if hit {
			p.Rewritten = rm.Target
			break
		}
	}
	x := expander{set: set, stage: st}
	entry, key := lookup(set, p.Rewritten, st, &p.Steps, &x.passed)
	p.Key = key
	if entry == nil {
		p.Err = fmt.Errorf("route %s: %w", p.Rewritten, ErrNoRoute)
		p.ErrText = p.Err.Error()
		return p, x.passed
	}
	acts, err := x.plan(entry.Actions, key)
	p.Actions = acts
	if err != nil {
		p.Err = fmt.Errorf("route %s: %w", p.Rewritten, err)
		p.ErrText = p.Err.Error()
	}
	return p, x.passed
}

// Match finds the entry for an address by the lookup order alone (no
// rematch, no alias expansion), stopping at reject entries as the policy
// service does. It returns the matched key or "".
func Match(set *rules.Set, address string) (*rules.Entry, string) {
	var passed bool
	return lookup(set, address, atRCPT, nil, &passed)
}

// lookup applies the original's order: addr=, whole address, extension
// shortening, local part in every domain (shortened too), @domain, default.
// At delivery it passes over reject entries (and sets *passed).
func lookup(set *rules.Set, address string, st stage, steps *[]Step, passed *bool) (*rules.Entry, string) {
	try := func(key, why string) *rules.Entry {
		e := set.Alias(key)
		pass := e != nil && st == atDelivery && e.Rejection() != nil
		if pass {
			e = nil
			*passed = true
		}
		if steps != nil {
			*steps = append(*steps, Step{Kind: "lookup", Key: key, Found: e != nil, Why: why, Passed: pass})
		}
		return e
	}
	for key, why := range keys(set.Extension, address) {
		if e := try(key, why); e != nil {
			return e, key
		}
	}
	return useDefault(set, st, steps, passed)
}

// keys yields the keys an address is looked up under, in the original's
// order, default excluded: addr=, whole address, extension shortening,
// local part in every domain (shortened too), @domain. A bare user (no
// domain) only matches name@.
func keys(ext *rules.Pattern, address string) func(yield func(key, why string) bool) {
	return func(yield func(key, why string) bool) {
		addr := strings.ToLower(address)
		if !yield(addr+"=", "exact address only (addr=)") || !yield(addr, "whole address") {
			return
		}
		user, domain, hasDomain := strings.Cut(addr, "@")
		if !hasDomain {
			yield(addr+"@.", "bare user without a domain (name@.)")
			return
		}
		for short := range Shortenings(ext, user) {
			if !yield(short+"@"+domain, "extension shortened") {
				return
			}
		}
		if user != "" {
			if !yield(user, "local part in every domain") {
				return
			}
			for short := range Shortenings(ext, user) {
				if !yield(short, "local part in every domain, extension shortened") {
					return
				}
			}
		}
		yield("@"+domain, "domain catch-all")
	}
}

func useDefault(set *rules.Set, st stage, steps *[]Step, passed *bool) (*rules.Entry, string) {
	e := set.Default
	pass := e != nil && st == atDelivery && e.Rejection() != nil
	if pass {
		e = nil
		*passed = true
	}
	if steps != nil {
		*steps = append(*steps, Step{Kind: "default", Key: "default", Found: e != nil, Why: "nothing matched", Passed: pass})
	}
	if e == nil {
		return nil, ""
	}
	return e, "default"
}

// Shortenings yields the local part cut at the last match of the extension,
// repeatedly (foo+bar+baz → foo+bar → foo). It never yields an empty local
// part and stops when a cut makes no progress, so it always terminates.
func Shortenings(ext *rules.Pattern, user string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		if ext == nil {
			return
		}
		for {
			i := ext.Rindex(user)
			if i <= 0 || i >= len(user) {
				return
			}
			user = user[:i]
			if !yield(user) {
				return
			}
		}
	}
}

// ExpandEntry expands the actions of one entry as delivery would after
// matching key, following aliases. It is how check finds alias loops and
// dead ends; it also expands the entry as the policy service does, because
// passing over a reject at delivery can lead elsewhere, and a reject may
// only be reached as a whole plan (ErrRejectMixed).
func ExpandEntry(set *rules.Set, key string, e *rules.Entry) ([]Planned, error) {
	if e.Rejection() == nil {
		rx := expander{set: set, stage: atRCPT}
		if _, err := rx.plan(e.Actions, key); err != nil {
			return nil, err
		}
	}
	x := expander{set: set, stage: atDelivery}
	return x.plan(e.Actions, key)
}

type expander struct {
	set    *rules.Set
	stage  stage
	hops   int
	passed bool // a reject entry was passed over (delivery)
}

// plan expands an entry's actions and, at RCPT time, refuses a reject that
// is part of a larger plan: the refusal would have to come before actions
// that run only after the message is accepted.
func (x *expander) plan(acts []*rules.Action, key string) ([]Planned, error) {
	out, err := x.expand(acts, []string{key}, nil)
	if err != nil || x.stage != atRCPT {
		return out, err
	}
	if len(out) == 1 && out[0].Action.Type == rules.TypeReject && len(out[0].OnError) == 0 {
		return out, nil
	}
	for _, pl := range out {
		if r := findReject(pl); r != nil && len(r.Via) > 0 {
			return out, fmt.Errorf("%w: %s → %s", ErrRejectMixed, key, strings.Join(r.Via, " → "))
		}
	}
	return out, nil
}

// findReject returns the first reject in a planned action or its onerror
// chain, or nil.
func findReject(pl Planned) *Planned {
	if pl.Action.Type == rules.TypeReject {
		return &pl
	}
	for _, oe := range pl.OnError {
		if r := findReject(oe); r != nil {
			return r
		}
	}
	return nil
}

// expand replaces alias actions by the actions of the address they name.
// chain holds the keys on the current path, to refuse cycles.
func (x *expander) expand(acts []*rules.Action, chain, via []string) ([]Planned, error) {
	out := []Planned{}
	for _, a := range acts {
		if a.Type != rules.TypeAlias || a.Problem != "" {
			pl := Planned{Action: a, Via: via}
			if a.OnError != nil {
				oe, err := x.expand([]*rules.Action{a.OnError}, chain, via)
				if err != nil {
					return out, err
				}
				pl.OnError = oe
			}
			out = append(out, pl)
			continue
		}
		x.hops++
		if x.hops > rules.MaxAliasHops {
			return out, fmt.Errorf("%w: more than %d alias hops (via %s)", ErrAliasLoop, rules.MaxAliasHops, strings.Join(append(via, a.Value), " → "))
		}
		entry, key := lookup(x.set, a.Value, x.stage, nil, &x.passed)
		if entry == nil {
			return out, fmt.Errorf("alias %s: %w", a.Value, ErrNoRoute)
		}
		for _, k := range chain {
			if k == key {
				return out, fmt.Errorf("%w: %s → %s matches key %q again", ErrAliasLoop, strings.Join(chain, " → "), a.Value, key)
			}
		}
		sub, err := x.expand(entry.Actions, append(chain[:len(chain):len(chain)], key), append(via[:len(via):len(via)], a.Value))
		out = append(out, sub...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}
