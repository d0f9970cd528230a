// Package explain answers "why did this message go there?": for an address
// it shows every lookup route.Resolve tried, the key that matched, the
// expanded actions with ${sender}/${recipient} filled in (the command lines
// from package action, which runs them), and where a failure of each action
// would go (delivery.FallbackFor, which delivery acts on). It has no side
// effects and uses the same router as delivery, so it cannot disagree with
// what delivery does.
package explain

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"quietmx/internal/action"
	"quietmx/internal/authres"
	"quietmx/internal/delivery"
	"quietmx/internal/route"
	"quietmx/internal/rules"
)

// Report is the explanation of one address (the --json form).
type Report struct {
	Address   string       `json:"address"`
	Sender    string       `json:"sender"`
	Recipient string       `json:"recipient"` // after rematch: ${recipient}
	Steps     []route.Step `json:"steps"`
	Key       string       `json:"key"`
	Actions   []Step       `json:"actions"`
	Error     string       `json:"error,omitempty"`
	OnError   string       `json:"on_routing_error,omitempty"`
	Stale     string       `json:"rules_stale,omitempty"`
	// Refusal is the reply the policy service gives at RCPT time ("550
	// 5.1.1 ..."), when the rules reject the address; RefusalMode says
	// whether it is given (refuse) or only logged (log). Steps and Actions
	// then show where delivery takes the message if it is accepted anyway.
	Refusal     string `json:"refusal,omitempty"`
	RefusalKey  string `json:"refusal_key,omitempty"`
	RefusalMode string `json:"refusal_mode,omitempty"`
	// Auth is what a sender-authentication verdict (explain --auth) does
	// for this address; Actions then show delivery under that verdict.
	Auth *Auth `json:"auth,omitempty"`
}

// Auth is the owner's dmarc_fail: setting for an address and what it does
// with one verdict: at the end of DATA (where a refusal is possible) and
// at delivery (where it is not: Junk instead).
type Auth struct {
	Verdict    authres.Verdict     `json:"verdict"`
	Setting    authres.Disposition `json:"dmarc_fail"`
	Key        string              `json:"dmarc_fail_key,omitempty"` // "" when no key matched (deliver)
	AtSMTP     authres.Disposition `json:"at_smtp"`
	AtDelivery authres.Disposition `json:"at_delivery"`
}

// Step is one action as it would run.
type Step struct {
	Summary   string   `json:"summary"`
	Type      string   `json:"type"`
	Argv      []string `json:"argv,omitempty"` // pipe and forward: the exact command line
	Timeout   string   `json:"timeout,omitempty"`
	Via       []string `json:"via,omitempty"`
	Problem   string   `json:"problem,omitempty"`
	OnError   []Step   `json:"onerror,omitempty"`
	OnFailure string   `json:"on_failure"` // where a failure goes when onerror does not help
}

// Explain routes each address and builds its report. sendmail and
// forwardFlag are the agent's -sendmail and -forward-sender, so forwards
// show the exact command delivery would run.
func Explain(set *rules.Set, sender string, addresses []string, sendmail, forwardFlag string) []Report {
	return ExplainAuth(set, sender, addresses, sendmail, forwardFlag, nil)
}

// ParseAuth reads an --auth flag: nil for "", else authres.ParseVerdict's
// verdict.
func ParseAuth(flag string) (*authres.Verdict, error) {
	if flag == "" {
		return nil, nil
	}
	v, err := authres.ParseVerdict(flag)
	if err != nil {
		return nil, fmt.Errorf("--auth: %w", err)
	}
	return &v, nil
}

// ExplainAuth is Explain for a message with verdict v (nil: none, as
// Explain): each report says what the address's dmarc_fail: does with it,
// and its actions are the ones delivery then runs (maildirs into Junk).
func ExplainAuth(set *rules.Set, sender string, addresses []string, sendmail, forwardFlag string, v *authres.Verdict) []Report {
	var out []Report
	for _, addr := range addresses {
		plan := route.Resolve(set, addr)
		r := Report{Address: addr, Sender: sender, Recipient: plan.Rewritten, Steps: plan.Steps, Key: plan.Key}
		if v != nil {
			setting, key := route.DMARCFail(set, addr)
			r.Auth = &Auth{Verdict: *v, Setting: setting, Key: key, AtSMTP: setting.Apply(*v), AtDelivery: setting.AtDelivery(*v)}
			if r.Auth.AtDelivery == authres.Junk {
				plan.Actions = delivery.IntoJunk(plan.Actions)
			}
		}
		d := &action.Delivery{Sender: sender, Recipient: plan.Rewritten, Sendmail: sendmail, ForwardSender: action.ForwardSender(set.ForwardSender, forwardFlag, plan.Rewritten)}
		if rcpt := route.AtRCPT(set, addr); rcpt.Refusal != nil {
			r.Refusal, r.RefusalKey, r.RefusalMode = rcpt.RejectReply(), rcpt.Refusal.Key, set.RejectMode
		}
		fallback := delivery.FallbackFor(set).Describe()
		for _, pl := range plan.Actions {
			r.Actions = append(r.Actions, step(pl, d, fallback))
		}
		if plan.Err != nil {
			r.Error = plan.Err.Error()
			r.OnError = fallback
		}
		out = append(out, r)
	}
	return out
}

func step(pl route.Planned, d *action.Delivery, fallback string) Step {
	a := pl.Action
	s := Step{Summary: a.Summary(), Type: a.Type, Via: pl.Via, Problem: a.Problem, OnFailure: fallback}
	switch a.Type {
	case rules.TypePipe:
		s.Argv = action.PipeCommand(a, d)
		if a.Timeout > 0 {
			s.Timeout = a.Timeout.String()
		}
	case rules.TypeForward:
		s.Argv = action.ForwardCommand(a, d)
	}
	if len(pl.OnError) > 0 {
		for _, oe := range pl.OnError {
			s.OnError = append(s.OnError, step(oe, d, fallback))
		}
		s.OnFailure = "onerror (then the next action); if onerror fails too: " + fallback
	}
	return s
}

// JSON writes the reports as a JSON array.
func JSON(w io.Writer, reports []Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(reports)
}

// Text writes the reports for people.
func Text(w io.Writer, reports []Report) error {
	var b strings.Builder
	for i, r := range reports {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s (sender <%s>)\n", r.Address, r.Sender)
		if r.Stale != "" {
			fmt.Fprintf(&b, "  WARNING: the rule file is not usable, so delivery uses the last valid snapshot: %s\n", r.Stale)
		}
		switch {
		case r.Refusal != "" && r.RefusalMode == rules.RejectLog:
			fmt.Fprintf(&b, "  would be refused at RCPT (%s) by key %q; reject_mode log accepts it and logs \"would reject\"\n", r.Refusal, r.RefusalKey)
			b.WriteString("  accepted, so delivery passes over the reject:\n")
		case r.Refusal != "":
			fmt.Fprintf(&b, "  refused at RCPT (%s) by key %q: the sending server is told, nothing is accepted or queued\n", r.Refusal, r.RefusalKey)
			b.WriteString("  if accepted anyway (policy service unreachable), delivery passes over the reject:\n")
		}
		b.WriteString("  lookups:\n")
		for _, st := range r.Steps {
			mark := "-"
			switch {
			case st.Passed:
				mark = "PASS"
			case st.Found:
				mark = "HIT"
			}
			switch st.Kind {
			case "rematch":
				fmt.Fprintf(&b, "    %-4s rematch /%s/ (%s)\n", mark, st.Key, st.Why)
			default:
				fmt.Fprintf(&b, "    %-4s %-40s %s\n", mark, strconv.Quote(st.Key), st.Why)
			}
		}
		if r.Recipient != r.Address {
			fmt.Fprintf(&b, "  rewritten by rematch to: %s (this is ${recipient})\n", r.Recipient)
		}
		if r.Key != "" {
			fmt.Fprintf(&b, "  matched: %s\n", r.Key)
		}
		if r.Auth != nil {
			writeAuth(&b, r.Auth)
		}
		if r.Error != "" {
			fmt.Fprintf(&b, "  ERROR: %s\n  then: %s\n", r.Error, r.OnError)
		}
		if len(r.Actions) == 0 && r.Error == "" {
			b.WriteString("  actions: none (dropped on purpose, logged)\n")
		}
		if len(r.Actions) > 0 {
			b.WriteString("  actions, in order:\n")
			for j, s := range r.Actions {
				writeStep(&b, fmt.Sprintf("%d.", j+1), s, "    ")
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeAuth(b *strings.Builder, a *Auth) {
	v := a.Verdict
	fmt.Fprintf(b, "  verdict: spf=%s dkim=%s dmarc=%s", cmp.Or(string(v.SPF), "-"), cmp.Or(string(v.DKIM), "-"), cmp.Or(string(v.DMARC), "-"))
	if v.Policy != "" {
		fmt.Fprintf(b, " (the domain's policy: p=%s)", v.Policy)
	}
	b.WriteString("\n")
	if a.Key != "" {
		fmt.Fprintf(b, "  dmarc_fail: %s (key %q)\n", a.Setting, a.Key)
	} else {
		fmt.Fprintf(b, "  dmarc_fail: no key matches: deliver as usual\n")
	}
	switch {
	case a.AtSMTP == authres.Refuse:
		b.WriteString("  → refused at the end of DATA (550 5.7.1), nothing accepted or queued, when DMARC is checked for this address (auth: dmarc) and every recipient of the message asked to refuse;\n")
		b.WriteString("    otherwise (accepted with another recipient): delivered into Junk\n")
	case a.AtDelivery == authres.Junk:
		b.WriteString("  → delivered into Junk\n")
	default:
		b.WriteString("  → delivered as usual (the verdict is only written in Authentication-Results)\n")
	}
}

func writeStep(b *strings.Builder, n string, s Step, indent string) {
	fmt.Fprintf(b, "%s%s %s", indent, n, s.Summary)
	if len(s.Via) > 0 {
		fmt.Fprintf(b, "  (via alias %s)", strings.Join(s.Via, " → "))
	}
	b.WriteString("\n")
	if s.Problem != "" {
		fmt.Fprintf(b, "%s   INVALID: %s\n", indent, s.Problem)
	}
	if len(s.Argv) > 0 {
		q := make([]string, len(s.Argv))
		for i, a := range s.Argv {
			q[i] = strconv.Quote(a)
		}
		fmt.Fprintf(b, "%s   runs: %s", indent, strings.Join(q, " "))
		if s.Timeout != "" {
			fmt.Fprintf(b, " (timeout %s)", s.Timeout)
		}
		b.WriteString("\n")
	}
	for _, oe := range s.OnError {
		writeStep(b, "onerror:", oe, indent+"   ")
	}
	fmt.Fprintf(b, "%s   on failure: %s\n", indent, s.OnFailure)
}
