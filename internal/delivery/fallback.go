package delivery

import (
	"fmt"
	"path/filepath"

	"quietmx/internal/rules"
)

// FallbackKind is what a rule file does with a message whose routing or
// actions failed (onerror included).
type FallbackKind int

const (
	FallbackRescue FallbackKind = iota // save it in the rescue directory
	FallbackDefer                      // exit 75: Postfix keeps it and retries
	FallbackLose                       // die_quietly with no rescue: exit 0, lost
)

// Fallback is the one decision of what happens after a failure. Delivery
// acts on it, explain prints it and check warns with it, so the three
// cannot disagree.
type Fallback struct {
	Kind FallbackKind
	Dir  string // FallbackRescue: the rescue directory
	JSON bool   // FallbackRescue: as a JSON dump, not a raw message
	// IfRescueFails is the outcome when writing the rescue copy fails:
	// Lost under die_quietly, else Deferred. Unused for the other kinds.
	IfRescueFails Outcome
	Why           string // FallbackDefer, FallbackLose: why there is no rescue
}

// FallbackFor reads the fallback from a rule set.
func FallbackFor(set *rules.Set) Fallback {
	ifFails := Deferred
	if set.DieQuietly {
		ifFails = Lost
	}
	var why string
	switch {
	case set.Rescue == "":
		why = "no rescue directory configured"
	case !filepath.IsAbs(set.Rescue):
		// The parser refuses it; a Set built otherwise must not rescue
		// relative to wherever the agent happens to run.
		why = fmt.Sprintf("rescue directory %q is not absolute", set.Rescue)
	default:
		return Fallback{Kind: FallbackRescue, Dir: set.Rescue, JSON: set.RescueJSON, IfRescueFails: ifFails}
	}
	if set.DieQuietly {
		return Fallback{Kind: FallbackLose, Why: why}
	}
	return Fallback{Kind: FallbackDefer, Why: why}
}

// Outcome is how a call ends when the fallback works as planned (for
// FallbackRescue: the rescue copy was written).
func (f Fallback) Outcome() Outcome {
	switch f.Kind {
	case FallbackRescue:
		return Rescued
	case FallbackLose:
		return Lost
	}
	return Deferred
}

// Describe says, for people, what happens to a message after a failure.
func (f Fallback) Describe() string {
	switch f.Kind {
	case FallbackRescue:
		form := "a raw message"
		if f.JSON {
			form = "a JSON dump"
		}
		return fmt.Sprintf("rescue as %s in %s (exit 0); if that fails: %s", form, f.Dir, describeOutcome(f.IfRescueFails))
	case FallbackLose:
		return "LOST: " + f.Why + " and die_quietly is set (exit 0, logged at ERROR)"
	}
	return "defer: " + f.Why + "; Postfix keeps the message and retries (exit 75)"
}

func describeOutcome(o Outcome) string {
	if o == Lost {
		return "LOST under die_quietly (exit 0, logged at ERROR)"
	}
	return "defer (exit 75)"
}
