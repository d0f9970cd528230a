// Package route decides, without side effects, which actions a recipient
// gets: rematch, then the lookup order of the original AltPostLocal, then
// alias expansion. Delivery and `altpostlocal explain` both call Resolve, so
// what explain prints is what delivery does.
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
)

// Step is one thing Resolve tried, in order.
type Step struct {
	Kind  string `json:"kind"`          // "rematch", "lookup" or "default"
	Key   string `json:"key"`           // key looked up, or regexp tested
	Found bool   `json:"found"`         // the key exists, or the regexp matched
	Why   string `json:"why,omitempty"` // which rule of the lookup order this is
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
}

// Resolve routes one recipient. It never fails outright: a routing error is
// returned in Plan.Err with the steps tried so far.
func Resolve(set *rules.Set, recipient string) *Plan {
	p := &Plan{Recipient: recipient, Rewritten: recipient}
	for _, rm := range set.Rematch {
		hit := rm.Pattern.MatchString(recipient)
		p.Steps = append(p.Steps, Step{Kind: "rematch", Key: rm.Pattern.Source, Found: hit, Why: "rematch → " + rm.Target})
		if hit {
			p.Rewritten = rm.Target
			break
		}
	}
	entry, key := lookup(set, p.Rewritten, &p.Steps)
	p.Key = key
	if entry == nil {
		p.Err = fmt.Errorf("route %s: %w", p.Rewritten, ErrNoRoute)
		p.ErrText = p.Err.Error()
		return p
	}
	x := expander{set: set}
	acts, err := x.expand(entry.Actions, []string{key}, nil)
	p.Actions = acts
	if err != nil {
		p.Err = fmt.Errorf("route %s: %w", p.Rewritten, err)
		p.ErrText = p.Err.Error()
	}
	return p
}

// lookup applies the original's order: addr=, whole address, extension
// shortening, local part in every domain (shortened too), @domain, default.
func lookup(set *rules.Set, address string, steps *[]Step) (*rules.Entry, string) {
	try := func(key, why string) *rules.Entry {
		e := set.Alias(key)
		if steps != nil {
			*steps = append(*steps, Step{Kind: "lookup", Key: key, Found: e != nil, Why: why})
		}
		return e
	}
	addr := strings.ToLower(address)
	if e := try(addr+"=", "exact address only (addr=)"); e != nil {
		return e, addr + "="
	}
	if e := try(addr, "whole address"); e != nil {
		return e, addr
	}
	user, domain, hasDomain := strings.Cut(addr, "@")
	if !hasDomain {
		// A bare user (no domain) only matches name@. and then default.
		if e := try(addr+"@.", "bare user without a domain (name@.)"); e != nil {
			return e, addr + "@."
		}
		return useDefault(set, steps)
	}
	for short := range Shortenings(set.Extension, user) {
		k := short + "@" + domain
		if e := try(k, "extension shortened"); e != nil {
			return e, k
		}
	}
	if user != "" {
		if e := try(user, "local part in every domain"); e != nil {
			return e, user
		}
		for short := range Shortenings(set.Extension, user) {
			if e := try(short, "local part in every domain, extension shortened"); e != nil {
				return e, short
			}
		}
	}
	if e := try("@"+domain, "domain catch-all"); e != nil {
		return e, "@" + domain
	}
	return useDefault(set, steps)
}

func useDefault(set *rules.Set, steps *[]Step) (*rules.Entry, string) {
	if steps != nil {
		*steps = append(*steps, Step{Kind: "default", Key: "default", Found: set.Default != nil, Why: "nothing matched"})
	}
	if set.Default == nil {
		return nil, ""
	}
	return set.Default, "default"
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
// matching key, following aliases. It is how check finds alias loops.
func ExpandEntry(set *rules.Set, key string, e *rules.Entry) ([]Planned, error) {
	x := expander{set: set}
	return x.expand(e.Actions, []string{key}, nil)
}

type expander struct {
	set  *rules.Set
	hops int
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
		entry, key := lookup(x.set, a.Value, nil)
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
