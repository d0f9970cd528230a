package oracle

import (
	"strings"
	"testing"
)

// Log lines as Postfix 3.7 writes them to maillog_file (postlogd) in the
// appliance: the SOFTBOUNCE line is copied from a run of TestOracleFires;
// the others have the same shape (log_adhoc's delivery record, qmgr's and
// bounce(8)'s lines) with the reasons of pipe(8), sys_exits and smtp(8).
const (
	pfx        = "Nov 30 05:48:55 mail "
	received   = pfx + "postfix/qmgr[301]: 6C19FC0EB2: from=<sender@outside.example>, size=2412, nrcpt=1 (queue active)\n"
	sent       = pfx + "postfix/pipe[410]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.21, delays=0.05/0.01/0/0.15, dsn=2.0.0, status=sent (delivered via altpostlocal service)\n"
	removed    = pfx + "postfix/qmgr[301]: 6C19FC0EB2: removed\n"
	tempfail   = pfx + "postfix/pipe[411]: 6C19FC0EB2: to=<broken@e2e.example>, relay=altpostlocal, delay=0.3, delays=0.05/0.01/0/0.24, dsn=4.3.0, status=deferred (temporary failure. Command output: outcome=deferred )\n"
	softbounce = pfx + "postfix/pipe[44]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.05, delays=0.01/0/0/0.04, dsn=4.3.5, status=SOFTBOUNCE (local configuration error)\n"
	bounced    = pfx + "postfix/pipe[413]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.1, delays=0.05/0.01/0/0.04, dsn=5.3.5, status=bounced (local configuration error)\n"
	expired    = pfx + "postfix/qmgr[301]: 6C19FC0EB2: from=<sender@outside.example>, status=expired, returned to sender\n"
	timeLimit  = pfx + "postfix/pipe[414]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=1001, delays=0.05/0.01/0/1000, dsn=4.3.0, status=SOFTBOUNCE (Command time limit exceeded: \"/usr/local/bin/altpostlocal\")\n"
	tempfail2  = pfx + "postfix/pipe[411]: 6C19FC0EB2: to=<broken@e2e.example>, relay=altpostlocal, delay=0.3, delays=0.05/0.01/0/0.24, dsn=4.3.0, status=deferred (temporary failure)\n"
	bounceFail = pfx + "postfix/qmgr[301]: 6C19FC0EB2: status=deferred (bounce failed)\n"
	killed     = pfx + "postfix/pipe[415]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.4, delays=0.05/0.01/0/0.3, dsn=4.3.0, status=deferred (Command died with signal 9: \"/usr/local/bin/altpostlocal\")\n"
	dsn5sent   = pfx + "postfix/pipe[416]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.1, delays=0.05/0.01/0/0.04, dsn=5.2.3, status=sent (delivered via altpostlocal service)\n"
	dsn5defer  = pfx + "postfix/pipe[417]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.1, delays=0.05/0.01/0/0.04, dsn=5.2.3, status=deferred (message too large)\n"
	// A notice made by bounce(8) and queued from the null sender.
	notice     = pfx + "postfix/bounce[420]: 6C19FC0EB2: sender non-delivery notification: 7A2B10C3D4\n"
	noticeQmgr = pfx + "postfix/qmgr[301]: 7A2B10C3D4: from=<>, size=4310, nrcpt=1 (queue active)\n"
	receipt    = pfx + "postfix/bounce[421]: 6C19FC0EB2: sender delivery status notification: 7A2B10C3D4\n"
	// A message from the null sender received over SMTP.
	nullIn = pfx + "postfix/qmgr[301]: 81F0E2A7B9: from=<>, size=900, nrcpt=1 (queue active)\n"
	// The forward path: the smarthost down, 451, then 550.
	fwdRefused   = pfx + "postfix/smtp[430]: 9D3C4B5A60: to=<someone@far.example>, relay=none, delay=0.02, delays=0.01/0/0.01/0, dsn=4.4.1, status=deferred (connect to smarthost.relay.test[172.18.0.2]:587: Connection refused)\n"
	fwdSuspended = pfx + "postfix/qmgr[301]: A0B1C2D3E4: to=<someone@far.example>, relay=none, delay=0.01, delays=0.01/0/0/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to smarthost.relay.test[172.18.0.2]:587: Connection refused)\n"
	fwd451       = pfx + "postfix/smtp[431]: 9D3C4B5A60: to=<someone@far.example>, relay=smarthost.relay.test[172.18.0.2]:587, delay=0.2, delays=0.01/0/0.1/0.09, dsn=4.0.0, status=deferred (host smarthost.relay.test[172.18.0.2] said: 451 4.0.0 try later (in reply to RCPT TO command))\n"
	fwdSent      = pfx + "postfix/smtp[432]: 9D3C4B5A60: to=<someone@far.example>, relay=smarthost.relay.test[172.18.0.2]:587, delay=0.3, delays=0.01/0/0.2/0.09, dsn=2.0.0, status=sent (250 2.0.0 OK)\n"
	fwd550       = pfx + "postfix/smtp[433]: 9D3C4B5A60: to=<someone@far.example>, relay=smarthost.relay.test[172.18.0.2]:587, delay=0.3, delays=0.01/0/0.2/0.09, dsn=5.0.0, status=bounced (host smarthost.relay.test[172.18.0.2] said: 550 5.0.0 rejected (in reply to RCPT TO command))\n"
	fwdNotice    = pfx + "postfix/bounce[434]: 9D3C4B5A60: sender non-delivery notification: B5C6D7E8F9\n"
	fwdNoticeQ   = pfx + "postfix/qmgr[301]: B5C6D7E8F9: from=<>, size=5120, nrcpt=1 (queue active)\n"
	fwdNoticeIn  = pfx + "postfix/pipe[435]: B5C6D7E8F9: to=<postmaster@e2e.example>, relay=altpostlocal, delay=0.1, delays=0.05/0.01/0/0.04, dsn=2.0.0, status=sent (delivered via altpostlocal service)\n"
	fwdNoticeOut = pfx + "postfix/smtp[436]: B5C6D7E8F9: to=<alice@origin.example>, relay=smarthost.relay.test[172.18.0.2]:587, delay=0.3, delays=0.01/0/0.2/0.09, dsn=2.0.0, status=sent (250 2.0.0 OK)\n"
	relayed      = pfx + "postfix/smtp[437]: C0D1E2F3A4: to=<x@foreign.example>, relay=mx.foreign.example[192.0.2.1]:25, delay=0.3, delays=0.01/0/0.2/0.09, dsn=2.0.0, status=sent (250 2.0.0 OK)\n"
	// Lines that mention bounces and 5.x.x codes but are no violation: a
	// relay refusal at RCPT (no queue id, no dsn=) and the agent's own line.
	refused  = pfx + "postfix/smtpd[201]: NOQUEUE: reject: RCPT from unknown[172.17.0.1]: 554 5.7.1 <x@foreign.example>: Relay access denied; from=<probe@outside.example> to=<x@foreign.example> proto=ESMTP helo=<client.e2e.example>\n"
	agentLog = pfx + "altpostlocal[409]: level=INFO msg=delivery queue_id=6C19FC0EB2 outcome=delivered exit=0 status=bounced-never\n"
)

var forward = Expect{
	Outbound: []string{"someone@far.example"},
	Rejected: []string{"someone@far.example"},
	NoticeTo: "postmaster@e2e.example",
}

func TestCheck(t *testing.T) {
	nullQueued := []QueueEntry{{QueueName: "active", QueueID: "7A2B10C3D4", Sender: ""}}
	for _, tc := range []struct {
		name   string
		log    string
		queue  []QueueEntry
		expect Expect
		want   []string // the Why of each violation, in order; nil = clean
	}{
		{name: "delivered", log: received + sent + removed},
		{name: "the agent's deferral (exit 75) then delivery", log: received + tempfail + tempfail2 + sent + removed},
		{name: "a status line of another shape fires", log: received + bounceFail, want: []string{"a line the oracle cannot read"}},
		{name: "relay refusal and agent line are no violation", log: refused + agentLog},
		{name: "softbounce fires", log: received + softbounce,
			want: []string{"a bounce that soft_bounce turned into a deferral (the agent exited with a code that bounces)"}},
		{name: "bounced fires", log: received + bounced, want: []string{"bounced"}},
		{name: "expired fires", log: received + expired, want: []string{"a message expired in the queue (returned to its sender)"}},
		{name: "pipe time limit fires", log: received + timeLimit, want: []string{
			"the agent was killed at the pipe time limit",
			"a bounce that soft_bounce turned into a deferral (the agent exited with a code that bounces)"}},
		{name: "an agent killed by a signal fires unless expected", log: received + killed,
			want: []string{"a deferral the agent did not ask for"}},
		{name: "an agent killed by the scenario", log: received + killed + sent,
			expect: Expect{Deferrals: []string{"Command died with signal 9"}}},
		{name: "dsn 5 with sent fires", log: dsn5sent, want: []string{"status=sent with dsn=5.2.3"}},
		{name: "dsn 5 with deferred fires", log: dsn5defer, want: []string{"a deferral with a permanent dsn=5.2.3"}},
		{name: "a non-delivery notice fires", log: received + bounced + notice + noticeQmgr, want: []string{
			"a notice (bounce or receipt) was made",
			"a message from the null sender entered the queue",
			"bounced"}},
		{name: "a delivery receipt fires", log: received + sent + receipt, want: []string{"a notice (bounce or receipt) was made"}},
		{name: "a null-sender message in the queue listing fires", queue: nullQueued,
			want: []string{"the queue holds a message from the null sender"}},
		{name: "a null-sender message received fires", log: nullIn, want: []string{"a message from the null sender entered the queue"}},
		{name: "smarthost deferrals of a forward", log: fwdRefused + fwdSuspended + fwd451 + fwdSent, expect: forward},
		{name: "smarthost deferrals without a forward rule fire", log: fwd451,
			want: []string{"relayed: Postfix's SMTP client delivered to a recipient no forward rule names"}},
		{name: "a rejected forward, its notice to our postmaster", log: fwd550 + fwdNotice + fwdNoticeQ + fwdNoticeIn, expect: forward},
		{name: "a rejected forward not provoked fires", log: fwd550 + fwdNotice + fwdNoticeQ + fwdNoticeIn,
			expect: Expect{Outbound: forward.Outbound, NoticeTo: forward.NoticeTo}, want: []string{
				"a notice (bounce or receipt) was made",
				"a message from the null sender entered the queue",
				"bounced"}},
		{name: "a notice of a rejected forward sent outward fires", log: fwd550 + fwdNotice + fwdNoticeQ + fwdNoticeOut, expect: forward,
			want: []string{"an expected notice went to someone else than postmaster@e2e.example"}},
		{name: "a relay fires", log: relayed, expect: forward,
			want: []string{"relayed: Postfix's SMTP client delivered to a recipient no forward rule names"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Check(tc.log, tc.queue, tc.expect)
			var whys []string
			for _, v := range got {
				whys = append(whys, v.Why)
			}
			if strings.Join(whys, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("violations:\n%s\nwant:\n%s", join(got), strings.Join(tc.want, "\n"))
			}
			for _, v := range got {
				if v.Line == "" {
					t.Errorf("violation %q without evidence", v.Why)
				}
			}
		})
	}
}

func join(vs []Violation) string {
	var b strings.Builder
	for _, v := range vs {
		b.WriteString(v.String() + "\n")
	}
	return b.String()
}

func TestParseQueue(t *testing.T) {
	out := `{"queue_name": "deferred", "queue_id": "6C19FC0EB2", "arrival_time": 1764482462, "message_size": 2412, "forced_expire": false, "sender": "sender@outside.example", "recipients": [{"address": "broken@e2e.example", "delay_reason": "temporary failure"}]}
{"queue_name": "active", "queue_id": "7A2B10C3D4", "arrival_time": 1764482463, "message_size": 4310, "forced_expire": false, "sender": "", "recipients": [{"address": "postmaster@e2e.example"}]}
`
	q, err := ParseQueue(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 || q[0].Sender != "sender@outside.example" || q[0].Recipients[0].DelayReason != "temporary failure" || q[1].Sender != "" {
		t.Fatalf("ParseQueue: %+v", q)
	}
	if got := Check("", q, Expect{}); len(got) != 1 || !strings.Contains(got[0].Line, "7A2B10C3D4") {
		t.Errorf("Check on the queue: %v", got)
	}
	if _, err := ParseQueue("{not json\n"); err == nil {
		t.Error("ParseQueue accepted a broken line")
	}
	if q, err := ParseQueue("postqueue: warning: Mail system is down\n"); err != nil || len(q) != 0 {
		t.Errorf("ParseQueue on a warning: %v %v", q, err)
	}
}
