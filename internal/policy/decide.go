package policy

import (
	"quietmx/internal/route"
	"quietmx/internal/rules"
)

// Decision is the answer to one request.
type Decision struct {
	Action    string // the reply's action: Dunno, or "550 5.1.1 <text>"
	Recipient string // "" when the request was not about a recipient
	Key       string // the key that decided, "" when none
	// Refusal is the refusal the rules call for, even when reject_mode
	// log answers Dunno ("would reject"); "" when none.
	Refusal string
	Why     string // why Dunno, for the debug log: "not RCPT", "no rules", ...
}

// Trial reports whether the rules refuse the recipient but reject_mode log
// lets it through.
func (d Decision) Trial() bool { return d.Refusal != "" && d.Action == Dunno }

// Decide answers one request from the rules in set (nil: no usable rules,
// so nothing is refused and delivery decides). Only a RCPT-stage SMTPD
// access request for a recipient can be refused.
func Decide(set *rules.Set, req Request) Decision {
	d := Decision{Action: Dunno, Recipient: req["recipient"]}
	switch {
	case req["request"] != "smtpd_access_policy":
		d.Why = "not an smtpd_access_policy request"
		return d
	case req["protocol_state"] != "RCPT":
		d.Why = "not at RCPT"
		return d
	case d.Recipient == "":
		d.Why = "no recipient"
		return d
	case set == nil:
		d.Why = "no usable rules"
		return d
	}
	plan := route.AtRCPT(set, d.Recipient)
	d.Key = plan.Key
	if plan.Refusal == nil {
		if plan.Err != nil {
			d.Why = plan.ErrText
		}
		return d
	}
	d.Key = plan.Refusal.Key
	d.Refusal = plan.RejectReply()
	if set.RejectMode != rules.RejectLog {
		d.Action = d.Refusal
	}
	return d
}
