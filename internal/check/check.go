// Package check validates a rule file beyond what parsing finds: alias
// loops, rematch chains, unreachable keys, a missing default and rescue,
// and the routing tests the operator pinned in the file (tests:). It also
// installs a rule file safely. It routes with package route, the very code
// delivery uses, so a passing test means delivery does the same.
package check

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strings"

	"quietmx/internal/delivery"
	"quietmx/internal/route"
	"quietmx/internal/rules"
)

// File checks the rule file at path.
func File(path string) (*rules.Set, rules.Findings) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, rules.Findings{{File: path, Severity: rules.Error, Msg: fmt.Sprintf("cannot read the rule file: %v", err)}}
	}
	return Rules(path, data)
}

// Rules parses and validates a rule file's bytes. The Set is nil when the
// file cannot route at all.
func Rules(file string, data []byte) (*rules.Set, rules.Findings) {
	set, fs := rules.Parse(file, data)
	if set != nil {
		fs = append(fs, Validate(set)...)
		fs = append(fs, RunTests(set)...)
	}
	slices.SortStableFunc(fs, func(a, b rules.Finding) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	return set, fs
}

// Validate finds what needs the router: alias loops and dead ends, rematch
// chains, unreachable keys, and mail that would be deferred or lost.
func Validate(set *rules.Set) rules.Findings {
	var fs rules.Findings
	add := func(sev rules.Severity, pos rules.Pos, path, format string, args ...any) {
		fs = append(fs, rules.Finding{File: set.File, Pos: pos, Path: path, Severity: sev, Msg: fmt.Sprintf(format, args...)})
	}
	keys := make([]string, 0, len(set.Aliases))
	for k := range set.Aliases {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	check := func(key, path string, e *rules.Entry) {
		if _, err := route.ExpandEntry(set, key, e); err != nil {
			add(rules.Error, e.Pos, path, "%v", err)
		}
	}
	for _, k := range keys {
		check(k, fmt.Sprintf("aliases.%q", k), set.Aliases[k])
	}
	if set.Default != nil {
		check("default", "default", set.Default)
	}
	for _, rm := range set.Rematch {
		for _, other := range set.Rematch {
			if other.Pattern.MatchString(rm.Target) {
				add(rules.Warning, rm.Pos, fmt.Sprintf("rematch.%q", rm.Pattern.Source),
					"target %q is itself matched by rematch %q, but rematch applies once: it will not be rewritten again", rm.Target, other.Pattern.Source)
				break
			}
		}
	}
	for _, k := range keys {
		exact, ok := strings.CutSuffix(k, "=")
		if !ok {
			continue
		}
		plain := set.Aliases[exact]
		if plain == nil {
			continue
		}
		where := fmt.Sprintf("aliases.%q", exact)
		if set.Extension == nil || !strings.Contains(exact, "@") {
			add(rules.Warning, plain.Pos, where, "unreachable: %q takes every exact match first and no extension can shorten to it", k)
		} else {
			add(rules.Warning, plain.Pos, where, "reached only by extended addresses: %q takes the exact address first", k)
		}
	}
	// What happens after a failure is delivery's decision (FallbackFor):
	// the warnings quote it rather than restate it.
	fb := delivery.FallbackFor(set)
	switch {
	case set.Default == nil && fb.Kind == delivery.FallbackRescue:
		add(rules.Warning, rules.Pos{}, "", "no default: mail for an unknown address: %s", fb.Describe())
	case set.Default == nil && fb.Kind == delivery.FallbackDefer:
		add(rules.Warning, rules.Pos{}, "", "no default: mail for an unknown address: %s, then returns it to the sender when it expires; add default: (or at least rescue:)", fb.Describe())
	case set.Default == nil:
		add(rules.Warning, rules.Pos{}, "", "no default: mail for an unknown address: %s; add default: (or at least rescue:)", fb.Describe())
	case fb.Kind == delivery.FallbackLose:
		add(rules.Warning, rules.Pos{}, "", "mail whose actions fail: %s; add rescue: (or remove die_quietly)", fb.Describe())
	}
	return fs
}

// RunTests routes each tests: entry and reports those whose outcome is not
// the expected one.
func RunTests(set *rules.Set) rules.Findings {
	var fs rules.Findings
	for i, t := range set.Tests {
		// The policy's view: a rejected address is refused before any
		// delivery, so that is what a test asserts.
		plan := route.AtRCPT(set, t.Address)
		got := Outcome(plan)
		if Matches(plan, t.Expect) {
			continue
		}
		fs = append(fs, rules.Finding{File: set.File, Pos: t.Pos, Path: fmt.Sprintf("tests[%d]", i), Severity: rules.Error,
			Msg: fmt.Sprintf("%s routes to %s, want %q", t.Address, got, t.Expect)})
	}
	return fs
}

// Summary lists a plan's actions as "a, b" ("nothing" for an empty list).
func Summary(plan *route.Plan) string {
	if len(plan.Actions) == 0 {
		return "nothing"
	}
	var parts []string
	for _, pl := range plan.Actions {
		parts = append(parts, pl.Action.Summary())
	}
	return strings.Join(parts, ", ")
}

// Outcome describes a plan for messages: key "k" (actions) or the error.
func Outcome(plan *route.Plan) string {
	if plan.Refusal != nil {
		return fmt.Sprintf("refused at RCPT (%s) by key %q", plan.RejectReply(), plan.Refusal.Key)
	}
	if plan.Err != nil {
		return fmt.Sprintf("rescue (%v)", plan.Err)
	}
	return fmt.Sprintf("key %q (%s)", plan.Key, Summary(plan))
}

// Matches reports whether a routing test's expectation holds: the matched
// key, the whole action summary, one of the actions, "rescue" for a
// routing error, or "reject" (or its reply) for a refusal at RCPT time.
// A refused address matches nothing else: it is never delivered.
func Matches(plan *route.Plan, expect string) bool {
	if plan.Refusal != nil {
		return expect == rules.TypeReject || expect == plan.RejectReply() || expect == plan.Refusal.Key
	}
	if plan.Err != nil {
		return expect == "rescue"
	}
	if expect == plan.Key || expect == Summary(plan) {
		return true
	}
	for _, pl := range plan.Actions {
		if pl.Action.Summary() == expect || pl.Action.Type == expect {
			return true
		}
	}
	return false
}

// Install checks data and, only when it has no errors, replaces the live
// rule file atomically and refreshes its snapshot and compiled form.
func Install(live string, data []byte, name string) (rules.Findings, error) {
	_, fs := Rules(name, data)
	if fs.HasErrors() {
		return fs, fmt.Errorf("%s has errors; %s left unchanged", name, live)
	}
	return fs, rules.Install(live, data)
}
