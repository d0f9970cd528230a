package delivery

import (
	"quietmx/internal/authres"
	"quietmx/internal/route"
	"quietmx/internal/rules"
)

// authFor reads the appliance's own Authentication-Results verdict (once
// per message) and the recipient's dmarc_fail: setting, and returns what
// delivery does about it: Junk moves the recipient's maildir deliveries
// into Junk. A refusal was the milter's to make before acceptance; here it
// is too late (a bounce), so it becomes Junk. note is the log's auth value
// ("dmarc:fail→junk"), "" when DMARC did not fail or was not checked.
func (r *runner) authFor(rcpt string) (d authres.Disposition, note string) {
	if r.cfg.Hostname == "" {
		return authres.Deliver, ""
	}
	if !r.verdictRead {
		r.verdict, r.hasVerdict = authres.ReadVerdict(r.req.Message, r.cfg.Hostname)
		r.verdictRead = true
	}
	if !r.hasVerdict || r.verdict.DMARC != authres.Fail {
		return authres.Deliver, ""
	}
	want, _ := route.DMARCFail(r.set, rcpt)
	d = want.AtDelivery(r.verdict)
	return d, "dmarc:fail→" + string(d)
}

// IntoJunk returns the plan with every maildir delivery (onerror lists
// too) sent to the Junk folder. The actions are copies: the rule set is
// shared by concurrent deliveries and must not change.
func IntoJunk(plan []route.Planned) []route.Planned {
	out := make([]route.Planned, len(plan))
	for i, pl := range plan {
		out[i] = pl
		if pl.Action.Type == rules.TypeMaildir && !pl.Action.Junk {
			a := *pl.Action
			a.Junk = true
			out[i].Action = &a
		}
		if len(pl.OnError) > 0 {
			out[i].OnError = IntoJunk(pl.OnError)
		}
	}
	return out
}
