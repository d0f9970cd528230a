// Package oracle holds the judgements of the end-to-end suite, as pure
// functions over what the appliance shows: Postfix's log lines, its queue
// listing (postqueue -j), and the messages read back over IMAP. They need
// no container, so each is unit-tested with the failure it must catch.
//
// Check is the never-bounce and no-relay oracle: the appliance may only
// deliver (status=sent) or defer because the agent asked for it (exit 75,
// "temporary failure"); anything else Postfix logs for a delivery, and any
// message from the null sender, is a violation unless the scenario caused
// it on purpose and says so in Expect.
package oracle

import (
	"bufio"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Violation is one broken promise, with the evidence.
type Violation struct {
	Why  string
	Line string // the log line or queue entry that shows it
}

func (v Violation) String() string { return v.Why + ": " + v.Line }

// Expect names what a scenario provokes on purpose. The zero value expects
// nothing: only delivery and the agent's own deferrals.
type Expect struct {
	// Outbound are the recipients a forward rule sends out through the
	// smarthost: Postfix's SMTP client delivering to them is no relay, and
	// their deferrals are the smarthost's to cause.
	Outbound []string
	// Rejected are outbound recipients whose copy the scenario has the
	// smarthost reject with 5xx: their bounce is expected, and so is its
	// notice (from the null sender) to NoticeTo, delivered locally.
	Rejected []string
	NoticeTo string
	// Deferrals are reasons (substrings) of deferrals the scenario causes
	// itself, such as "Command died with signal 9" when it kills agents.
	Deferrals []string
}

// agentSocket is the resident agent's LMTP socket (delivery: lmtp):
// Postfix's lmtp(8) logs relay=HOST[/run/altpostlocal/lmtp] for it, and
// "host HOST[/run/altpostlocal/lmtp] said: 4..." when the agent defers.
const agentSocket = "/run/altpostlocal/lmtp"

// toAgent reports whether d is lmtp(8) handing mail to the agent, or
// failing to reach it (relay=none): local delivery, not an outbound one.
func toAgent(d delivery) bool {
	return d.prog == "lmtp" && (strings.HasSuffix(d.relay, "["+agentSocket+"]") || d.relay == "none" && strings.Contains(d.reason, "["+agentSocket+"]"))
}

// agentTempfail is how pipe(8) logs the agent's exit 75 (EX_TEMPFAIL):
// sys_exits' text for it, then the command's output if any.
const agentTempfail = "temporary failure"

var (
	// A Postfix log line: program, queue id, the rest. Queue ids are short
	// (hex) or long (enable_long_queue_ids).
	postfixLine = regexp.MustCompile(`postfix/([a-z]+)\[\d+\]: ([0-9A-Za-z]+): (.*)$`)
	// log_adhoc's delivery record: to=<...>, [orig_to=<...>,] relay=...,
	// ... dsn=X.Y.Z, status=word (reason).
	deliveryRe = regexp.MustCompile(`^to=<([^>]*)>,(?: orig_to=<[^>]*>,)? relay=([^,]*),.*? dsn=(\d\.\d{1,3}\.\d{1,3}), status=(\S+)(?: \((.*)\))?$`)
	// qmgr's first line for a queued message.
	qmgrFromRe = regexp.MustCompile(`^from=<([^>]*)>, (?:size=|status=)`)
	// bounce(8) enqueuing a notice: "sender non-delivery notification:
	// NEWID", "sender delivery status notification: NEWID", "postmaster
	// ... notification: NEWID", "sender delay notification: NEWID".
	noticeRe = regexp.MustCompile(`notification: ([0-9A-Za-z]+)$`)
)

type delivery struct {
	prog, qid, to, relay, dsn, status, reason, line string
}

// Check reads the whole log and the current queue and returns every
// violation of the never-bounce and no-relay promises.
func Check(log string, queue []QueueEntry, e Expect) []Violation {
	var out []Violation
	bad := func(why, line string) { out = append(out, Violation{why, strings.TrimSpace(line)}) }

	var deliveries []delivery
	var nullSender []delivery           // qmgr's from=<> lines: qid, line
	var notices []delivery              // bounce(8)'s lines: qid = the notice, to = the qid it reports on
	expectedBounce := map[string]bool{} // qids with an expected bounce

	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := postfixLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		prog, qid, rest := m[1], m[2], m[3]
		switch {
		case strings.Contains(rest, "status=expired"):
			bad("a message expired in the queue (returned to its sender)", line)
		case strings.Contains(rest, "Command time limit exceeded"):
			bad("the agent was killed at the pipe time limit", line)
		}
		if d := deliveryRe.FindStringSubmatch(rest); d != nil {
			dl := delivery{prog, qid, d[1], d[2], d[3], d[4], d[5], line}
			deliveries = append(deliveries, dl)
			if dl.status == "bounced" && slices.Contains(e.Rejected, dl.to) && isOutbound(dl.prog) {
				expectedBounce[qid] = true
			}
			continue
		}
		if f := qmgrFromRe.FindStringSubmatch(rest); f != nil && prog == "qmgr" {
			if f[1] == "" {
				nullSender = append(nullSender, delivery{qid: qid, line: line})
			}
			continue
		}
		if n := noticeRe.FindStringSubmatch(rest); n != nil && prog == "bounce" {
			notices = append(notices, delivery{qid: n[1], to: qid, line: line})
			continue
		}
		// Fail closed: a line about a status, a notice or the null sender
		// that none of the shapes above reads would otherwise pass unseen
		// (e.g. "status=deferred (bounce failed)").
		if strings.Contains(rest, "status=") || strings.Contains(rest, "notification") || strings.Contains(rest, "from=<>,") {
			bad("a line the oracle cannot read", line)
		}
	}

	// A notice is expected when it reports an expected bounce and goes
	// only to NoticeTo.
	expectedNotice := map[string]bool{}
	for _, n := range notices {
		if !expectedBounce[n.to] || e.NoticeTo == "" {
			bad("a notice (bounce or receipt) was made", n.line)
			continue
		}
		expectedNotice[n.qid] = true
	}
	for _, d := range deliveries {
		if expectedNotice[d.qid] && !strings.EqualFold(d.to, e.NoticeTo) {
			bad("an expected notice went to someone else than "+e.NoticeTo, d.line)
		}
	}
	for _, n := range nullSender {
		if !expectedNotice[n.qid] {
			bad("a message from the null sender entered the queue", n.line)
		}
	}

	for _, d := range deliveries {
		if why := judge(d, e, expectedNotice[d.qid]); why != "" {
			bad(why, d.line)
		}
	}

	for _, q := range queue {
		if q.Sender == "" && !expectedNotice[q.QueueID] {
			bad("the queue holds a message from the null sender", q.String())
		}
	}
	return out
}

// judge returns why one delivery record breaks a promise, or "".
func judge(d delivery, e Expect, notice bool) string {
	outbound := isOutbound(d.prog) && !toAgent(d)
	forwarded := slices.Contains(e.Outbound, d.to)
	if outbound && !forwarded && !notice {
		return "relayed: Postfix's SMTP client delivered to a recipient no forward rule names"
	}
	switch d.status {
	case "sent":
		if d.dsn[0] != '2' {
			return "status=sent with dsn=" + d.dsn
		}
		return ""
	case "deferred":
		switch {
		case d.dsn[0] == '5':
			return "a deferral with a permanent dsn=" + d.dsn
		case d.prog == "pipe" && strings.HasPrefix(d.reason, agentTempfail):
			return "" // the agent asked for it: exit 75
		case toAgent(d) && strings.Contains(d.reason, "["+agentSocket+"] said: 4"):
			return "" // the agent asked for it: a 4xx LMTP reply
		case forwarded:
			return "" // the smarthost's doing; Postfix retries
		case containsAny(d.reason, e.Deferrals):
			return "" // the scenario's own fault injection
		}
		return "a deferral the agent did not ask for"
	case "bounced":
		if outbound && slices.Contains(e.Rejected, d.to) {
			return "" // the smarthost's 5xx, provoked by the scenario
		}
		return "bounced"
	case "SOFTBOUNCE":
		return "a bounce that soft_bounce turned into a deferral (the agent exited with a code that bounces)"
	}
	return "delivery status " + d.status
}

func isOutbound(prog string) bool { return prog == "smtp" || prog == "lmtp" }

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if sub != "" && strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// QueueEntry is one message of `postqueue -j`.
type QueueEntry struct {
	QueueName  string `json:"queue_name"`
	QueueID    string `json:"queue_id"`
	Sender     string `json:"sender"`
	Size       int    `json:"message_size"`
	Recipients []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

func (e QueueEntry) String() string {
	var rs []string
	for _, r := range e.Recipients {
		rs = append(rs, fmt.Sprintf("%s (%s)", r.Address, r.DelayReason))
	}
	return fmt.Sprintf("%s %s from=<%s> to %s", e.QueueName, e.QueueID, e.Sender, strings.Join(rs, ", "))
}

// ParseQueue reads the output of `postqueue -j`: one JSON object a line.
func ParseQueue(out string) ([]QueueEntry, error) {
	var q []QueueEntry
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e QueueEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("postqueue -j: %w: %s", err, line)
		}
		q = append(q, e)
	}
	return q, sc.Err()
}
