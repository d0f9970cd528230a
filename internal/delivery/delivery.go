// Package delivery alone decides how an agent call ends: it parses the
// call (ParseCall), reads its input, loads the rules, routes each
// recipient, runs its actions, and when anything fails acts on the rule
// file's Fallback (rescue, defer or lose). Every run ends in exactly one
// Outcome, bad flags, unreadable input and panics included, and ExitCode
// maps it to the only two codes Postfix may see: 0 and 75 (EX_TEMPFAIL).
//
// DIAGNOSTICS
// One log line per recipient (Record), written by Log.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"quietmx/internal/action"
	"quietmx/internal/authres"
	"quietmx/internal/dump"
	"quietmx/internal/maildir"
	"quietmx/internal/message"
	"quietmx/internal/route"
	"quietmx/internal/rules"
)

// Outcome is how a call ended. The values are in order of severity.
type Outcome int

const (
	Delivered Outcome = iota // every action of every recipient succeeded
	Dropped                  // dropped on purpose (nothing/discard/[], or no recipient at all)
	Rescued                  // saved in the rescue directory after an error
	Lost                     // failed under die_quietly with no usable rescue: exit 0, logged at ERROR
	Deferred                 // Postfix keeps the message and retries
)

func (o Outcome) String() string {
	return [...]string{"delivered", "dropped", "rescued", "lost", "deferred"}[o]
}

// ExTempFail is sysexits EX_TEMPFAIL: Postfix defers and retries.
const ExTempFail = 75

// ExitCode is the one place an Outcome becomes an exit code.
func ExitCode(o Outcome) int {
	if o == Deferred {
		return ExTempFail
	}
	return 0
}

// ErrLoop means the message already carries Delivered-To for the recipient.
var ErrLoop = errors.New("mail loop: message already has Delivered-To for this recipient")

// Request is one call of the agent.
type Request struct {
	Sender     string
	Recipients []string
	QueueID    string
	Message    []byte
}

// Config holds everything a run needs besides the message.
type Config struct {
	RulesPath     string
	Sendmail      string        // path of sendmail for forward actions
	ForwardSender string        // overrides the rule file's forward_sender
	Deadline      time.Duration // whole-run limit, under Postfix's command_time_limit
	// Rules, when set, supplies the rules instead of loading RulesPath on
	// every run: a long-running process keeps them loaded (rules.Live).
	Rules *rules.Live
	// Hostname is the appliance's host name, the authserv-id of the
	// Authentication-Results field its milter writes; "" reads no verdict.
	Hostname string
}

// loadRules is the one place a run gets its rules.
func (cfg Config) loadRules() (rules.Loaded, error) {
	if cfg.Rules != nil {
		return cfg.Rules.Current()
	}
	return rules.Load(cfg.RulesPath)
}

// ActionLog is one action and what became of it.
type ActionLog struct {
	Action string `json:"action"`         // e.g. maildir:/var/mail/a/Maildir
	Result string `json:"result"`         // ok, failed: ..., skipped
	File   string `json:"file,omitempty"` // the file it wrote (Maildir file, dump file)
}

// String is the action's part of the log line: summary=result, and the
// file written in parentheses (maildir:/m=ok(/m/new/1.M2P3Q1R4.host)).
func (a ActionLog) String() string {
	if a.File != "" {
		return a.Action + "=" + a.Result + "(" + a.File + ")"
	}
	return a.Action + "=" + a.Result
}

// Record is the log line for one recipient.
type Record struct {
	QueueID       string
	Sender        string
	OrigRecipient string
	Recipient     string // after rematch
	Key           string
	Actions       []ActionLog
	Outcome       Outcome
	Error         string
	RescueFile    string // the rescue copy, when Outcome is Rescued
	Detail        string // why there was no rescue copy
	Auth          string // what a DMARC failure did, "dmarc:fail→junk"; "" when none
}

// Result is what a run did.
type Result struct {
	Outcome    Outcome
	Records    []Record // at least one, also when the call failed before routing
	RulesStale string   // non-empty: the last valid rules were used, and why
	Err        error    // the reason for a defer, rescue or loss
}

// Run delivers one message: the per-message path of the agent, reusable by
// a long-running process (it never exits and keeps no state). It never
// panics out (a panic defers) and always returns at least one Record.
func Run(ctx context.Context, cfg Config, req Request) (res Result) {
	defer func() {
		if r := recover(); r != nil {
			res = failAll(res, req, fmt.Errorf("panic: %v", r))
		}
	}()
	// Postfix's pipe flag F (which existing AltPostLocal lines use) puts an
	// mbox From_ line first; Dovecot's LDA drops it, and so do we, once,
	// before anything sees the message.
	req.Message = message.StripFromLine(req.Message)
	if len(req.Recipients) == 0 {
		// The original exits 0: there is nothing to deliver.
		return Result{Outcome: Dropped, Records: []Record{{QueueID: req.QueueID, Sender: req.Sender, Outcome: Dropped, Error: "no recipient: nothing to deliver"}}}
	}
	if cfg.Deadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Deadline)
		defer cancel()
	}
	loaded, err := cfg.loadRules()
	if err != nil {
		return failAll(res, req, err)
	}
	if loaded.Stale {
		res.RulesStale = loaded.Reason
	}
	r := runner{ctx: ctx, cfg: cfg, set: loaded.Set, req: req}
	r.run(&res) // through a pointer: a panic keeps the records so far
	return res
}

// failAll ends res as Deferred because of err: recipients already logged
// keep their record, the others get one carrying err.
func failAll(res Result, req Request, err error) Result {
	res.Outcome, res.Err = Deferred, err
	for i := range res.Records {
		res.Records[i].Outcome = Deferred
		if res.Records[i].Error == "" {
			res.Records[i].Error = err.Error()
		}
	}
	for _, r := range req.Recipients[min(len(res.Records), len(req.Recipients)):] {
		res.Records = append(res.Records, Record{QueueID: req.QueueID, Sender: req.Sender, OrigRecipient: r, Recipient: r, Outcome: Deferred, Error: err.Error()})
	}
	if len(res.Records) == 0 {
		res.Records = append(res.Records, Record{QueueID: req.QueueID, Sender: req.Sender, Outcome: Deferred, Error: err.Error()})
	}
	return res
}

type runner struct {
	ctx context.Context
	cfg Config
	set *rules.Set
	req Request

	verdict                 authres.Verdict // the appliance's own, read once (auth.go)
	verdictRead, hasVerdict bool
}

func (r *runner) run(res *Result) {
	res.Outcome = Dropped
	var failure error
	var failed int
	for i, rcpt := range r.req.Recipients {
		rec, err := r.recipient(rcpt)
		res.Records = append(res.Records, rec)
		if r.ctx.Err() != nil {
			failure = fmt.Errorf("deadline: %w", r.ctx.Err())
			failed = i
			break
		}
		if err != nil {
			failure, failed = err, i
			break
		}
		if rec.Outcome == Delivered {
			res.Outcome = Delivered
		}
	}
	if failure == nil {
		return
	}
	res.Err = failure
	// The rest of the recipients are not routed: the rescue copy (or the
	// retry) covers the whole message, as in the original.
	for _, rcpt := range r.req.Recipients[failed+1:] {
		res.Records = append(res.Records, Record{QueueID: r.req.QueueID, Sender: r.req.Sender, OrigRecipient: rcpt, Recipient: rcpt, Error: "not routed: an earlier recipient of this call failed"})
	}
	outcome, file, detail := r.rescue(res.Records[failed].Recipient)
	res.Outcome = outcome
	for i := failed; i < len(res.Records); i++ {
		res.Records[i].Outcome = outcome
		res.Records[i].RescueFile = file
		res.Records[i].Detail = detail
	}
}

// recipient routes one recipient and runs its actions.
func (r *runner) recipient(rcpt string) (Record, error) {
	rec := Record{QueueID: r.req.QueueID, Sender: r.req.Sender, OrigRecipient: rcpt, Recipient: rcpt}
	plan := route.Resolve(r.set, rcpt)
	rec.Recipient, rec.Key = plan.Rewritten, plan.Key
	if message.HasDeliveredTo(r.req.Message, plan.Rewritten) || message.HasDeliveredTo(r.req.Message, rcpt) {
		rec.Error = ErrLoop.Error()
		return rec, fmt.Errorf("%s: %w", plan.Rewritten, ErrLoop)
	}
	if plan.Err != nil {
		rec.Error = plan.Err.Error()
		return rec, plan.Err
	}
	d := &action.Delivery{
		Sender: r.req.Sender, Recipient: plan.Rewritten, Recipients: r.req.Recipients,
		Message: r.req.Message, Sendmail: r.cfg.Sendmail, ForwardSender: action.ForwardSender(r.set.ForwardSender, r.cfg.ForwardSender, plan.Rewritten),
	}
	actions := plan.Actions
	if disp, note := r.authFor(rcpt); note != "" {
		rec.Auth = note
		if disp == authres.Junk {
			actions = IntoJunk(actions)
		}
	}
	rec.Outcome = Dropped
	for i, pl := range actions {
		if err := r.ctx.Err(); err != nil {
			rec.Error = err.Error()
			return rec, err
		}
		delivered, err := r.runPlanned(pl, d, &rec.Actions)
		if err != nil {
			for _, rest := range actions[i+1:] {
				rec.Actions = append(rec.Actions, ActionLog{Action: rest.Action.Summary(), Result: "skipped"})
			}
			rec.Error = err.Error()
			return rec, fmt.Errorf("action %d (%s): %w", i+1, pl.Action.Summary(), err)
		}
		if delivered {
			rec.Outcome = Delivered
		}
	}
	return rec, nil
}

// runPlanned runs one action and, when it fails, its onerror list. It
// reports whether the message was kept somewhere (not only dropped).
func (r *runner) runPlanned(pl route.Planned, d *action.Delivery, logs *[]ActionLog) (bool, error) {
	ar, err := action.Run(r.ctx, pl.Action, d)
	desc := pl.Action.Summary()
	if err == nil {
		*logs = append(*logs, ActionLog{Action: desc, Result: "ok", File: ar.File})
		return keeps(pl.Action), nil
	}
	*logs = append(*logs, ActionLog{Action: desc, Result: "failed: " + err.Error()})
	if r.ctx.Err() != nil || len(pl.OnError) == 0 {
		return false, err
	}
	kept := false
	for _, oe := range pl.OnError {
		k, oerr := r.runPlanned(oe, d, logs)
		if oerr != nil {
			return false, fmt.Errorf("%w; onerror: %w", err, oerr)
		}
		kept = kept || k
	}
	return kept, nil
}

func keeps(a *rules.Action) bool {
	return a.Type != rules.TypeNothing && a.Type != rules.TypeDiscard
}

// rescue acts on the rule file's Fallback after a failure and says how
// the call ends, the rescue file written, or why there is none.
func (r *runner) rescue(rcpt string) (Outcome, string, string) {
	if r.ctx.Err() != nil {
		// Past our own deadline Postfix would soon kill us and bounce:
		// defer now and let it retry.
		return Deferred, "", "agent deadline passed"
	}
	fb := FallbackFor(r.set)
	if fb.Kind != FallbackRescue {
		return fb.Outcome(), "", fb.Why
	}
	var where string
	var err error
	if fb.JSON {
		where, err = dump.WriteRescue(fb.Dir, dump.Dump{Sender: r.req.Sender, Recipients: r.req.Recipients, Recipient: rcpt, Mail: r.req.Message})
	} else {
		// Return-Path and X-Original-To keep the envelope; not Delivered-To,
		// which would make a re-injected rescue copy look like a loop.
		where, err = maildir.Store(fb.Dir, "", message.RescueHeaders(r.req.Sender, rcpt, r.req.Message), r.req.Message)
	}
	if err != nil {
		return fb.IfRescueFails, "", fmt.Sprintf("rescue failed: %v", err)
	}
	return fb.Outcome(), where, ""
}
