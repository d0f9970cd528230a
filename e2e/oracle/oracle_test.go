package oracle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Log lines as Postfix 3.7 writes them to maillog_file (postlogd) in the
// appliance, copied from runs of the e2e suite (TestOracleFires,
// TestNeverBounce, TestFaultInjection, TestForward) unless marked
// "shape": those have the same shape (log_adhoc's delivery record, qmgr's
// and bounce(8)'s lines) with the reasons of pipe(8) and sys_exits.
const (
	pfx      = "Nov 30 05:56:40 mail "
	received = pfx + "postfix/qmgr[34]: 6C19FC0EB2: from=<sender@outside.example>, size=1245, nrcpt=1 (queue active)\n"
	sent     = pfx + "postfix/pipe[43]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.03, delays=0.01/0/0/0.02, dsn=2.0.0, status=sent (delivered via altpostlocal service)\n"
	removed  = pfx + "postfix/qmgr[34]: 6C19FC0EB2: removed\n"
	// delivery: lmtp, the resident agent: delivered, deferred by it (shape),
	// its socket refusing while it was down (shape).
	lmtpSent    = pfx + "postfix/lmtp[65]: C061FFA763: to=<me@e2e.example>, relay=mail.e2e.example[/run/altpostlocal/lmtp], delay=0.07, delays=0.03/0.03/0/0.01, dsn=2.0.0, status=sent (250 2.0.0 <me@e2e.example> OK: queued)\n"
	lmtpDefer   = pfx + "postfix/lmtp[65]: C061FFA763: to=<me@e2e.example>, relay=mail.e2e.example[/run/altpostlocal/lmtp], delay=0.07, delays=0.03/0.03/0/0.01, dsn=4.3.0, status=deferred (host mail.e2e.example[/run/altpostlocal/lmtp] said: 451 4.3.0 temporary failure (in reply to end of DATA command))\n"
	lmtpRefused = pfx + "postfix/lmtp[65]: C061FFA763: to=<me@e2e.example>, relay=none, delay=0.07, delays=0.03/0.03/0/0, dsn=4.4.1, status=deferred (connect to mail.e2e.example[/run/altpostlocal/lmtp]: Connection refused)\n"
	// The agent's exit 75: an unwritable Maildir, a full filesystem.
	tempfail   = pfx + "postfix/pipe[62]: 6C19FC0EB2: to=<broken@e2e.example>, relay=altpostlocal, delay=0.12, delays=0.02/0/0/0.1, dsn=4.3.0, status=deferred (temporary failure)\n"
	tempfail2  = pfx + "postfix/pipe[1976]: 6C19FC0EB2: to=<tiny@e2e.example>, relay=altpostlocal, delay=0.06, delays=0.02/0/0/0.04, dsn=4.3.0, status=deferred (temporary failure)\n"
	softbounce = pfx + "postfix/pipe[44]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.05, delays=0.01/0/0/0.04, dsn=4.3.5, status=SOFTBOUNCE (local configuration error)\n"
	killed     = pfx + "postfix/pipe[117]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.2, delays=0.13/0.01/0/0.05, dsn=4.3.0, status=deferred (Command died with signal 9: \"/usr/local/bin/altpostlocal\")\n"
	// shape: without soft_bounce; expired; the pipe time limit; a 5.x.x
	// with another status; bounce_flush's own line.
	bounced    = pfx + "postfix/pipe[413]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.1, delays=0.05/0.01/0/0.04, dsn=5.3.5, status=bounced (local configuration error)\n"
	expired    = pfx + "postfix/qmgr[34]: 6C19FC0EB2: from=<sender@outside.example>, status=expired, returned to sender\n"
	timeLimit  = pfx + "postfix/pipe[414]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=1001, delays=0.05/0.01/0/1000, dsn=4.3.0, status=SOFTBOUNCE (Command time limit exceeded: \"/usr/local/bin/altpostlocal\")\n"
	dsn5sent   = pfx + "postfix/pipe[416]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.1, delays=0.05/0.01/0/0.04, dsn=5.2.3, status=sent (delivered via altpostlocal service)\n"
	dsn5defer  = pfx + "postfix/pipe[417]: 6C19FC0EB2: to=<me@e2e.example>, relay=altpostlocal, delay=0.1, delays=0.05/0.01/0/0.04, dsn=5.2.3, status=deferred (message too large)\n"
	bounceFail = pfx + "postfix/qmgr[34]: 6C19FC0EB2: status=deferred (bounce failed)\n"
	// A notice made by bounce(8) and queued from the null sender (the
	// forward path's lines with another queue id and kind).
	notice     = pfx + "postfix/bounce[199]: 6C19FC0EB2: sender non-delivery notification: 7A2B10C3D4\n"
	noticeQmgr = pfx + "postfix/qmgr[34]: 7A2B10C3D4: from=<>, size=4452, nrcpt=1 (queue active)\n"
	receipt    = pfx + "postfix/bounce[199]: 6C19FC0EB2: sender delivery status notification: 7A2B10C3D4\n"
	// A message from the null sender received over SMTP.
	nullIn = pfx + "postfix/qmgr[34]: 81F0E2A7B9: from=<>, size=900, nrcpt=1 (queue active)\n"
	// The forward path: the smarthost refusing connections, its name not
	// resolving, a 451, acceptance, then a 550 and its notice, delivered to
	// our postmaster by the agent.
	fwdRefused   = pfx + "postfix/smtp[51]: C2540CC037: to=<someone@far.example>, relay=none, delay=0.03, delays=0.03/0/0/0, dsn=4.4.1, status=deferred (connect to smarthost.relay.test[172.22.0.2]:587: Connection refused)\n"
	fwdNoName    = pfx + "postfix/smtp[51]: 1FE4FCC1FF: to=<someone@far.example>, relay=none, delay=0.03, delays=0.02/0/0/0, dsn=4.3.5, status=deferred (Host or domain name not found. Name service error for name=smarthost.relay.test type=A: Host not found)\n"
	fwd451       = pfx + "postfix/smtp[51]: F40A0CC209: to=<someone@far.example>, relay=smarthost.relay.test[172.22.0.2]:587, delay=0.08, delays=0.02/0/0.05/0, dsn=4.7.1, status=deferred (host smarthost.relay.test[172.22.0.2] said: 451 4.7.1 smarthost test mode 451 (in reply to RCPT TO command))\n"
	fwdSent      = pfx + "postfix/smtp[51]: F40A0CC209: to=<someone@far.example>, relay=smarthost.relay.test[172.22.0.2]:587, delay=0.65, delays=0.59/0.01/0.05/0, dsn=2.0.0, status=sent (250 2.0.0 OK: queued)\n"
	fwd550       = pfx + "postfix/smtp[51]: 6834ECC22C: to=<someone@far.example>, relay=smarthost.relay.test[172.22.0.2]:587, delay=0.11, delays=0.02/0/0.05/0.04, dsn=5.7.1, status=bounced (host smarthost.relay.test[172.22.0.2] said: 550 5.7.1 smarthost test mode 550 (in reply to RCPT TO command))\n"
	fwdNoticeQ   = pfx + "postfix/qmgr[31]: 8249FCC265: from=<>, size=4452, nrcpt=1 (queue active)\n"
	fwdNotice    = pfx + "postfix/bounce[199]: 6834ECC22C: sender non-delivery notification: 8249FCC265\n"
	fwdNoticeIn  = pfx + "postfix/pipe[43]: 8249FCC265: to=<postmaster@e2e.example>, relay=altpostlocal, delay=0.03, delays=0.01/0/0/0.02, dsn=2.0.0, status=sent (delivered via altpostlocal service)\n"
	fwdNoticeOut = pfx + "postfix/smtp[51]: 8249FCC265: to=<alice@origin.example>, relay=smarthost.relay.test[172.22.0.2]:587, delay=0.3, delays=0.01/0/0.2/0.09, dsn=2.0.0, status=sent (250 2.0.0 OK: queued)\n" // shape
	relayed      = pfx + "postfix/smtp[51]: C0D1E2F3A4: to=<x@foreign.example>, relay=mx.foreign.example[192.0.2.1]:25, delay=0.3, delays=0.01/0/0.2/0.09, dsn=2.0.0, status=sent (250 2.0.0 OK)\n"                // shape
	// Lines that mention bounces and 5.x.x codes but are no violation: a
	// relay refusal at RCPT (no queue id, no dsn=) and the agent's line
	// for the notice (sender="").
	refused  = pfx + "postfix/smtpd[201]: NOQUEUE: reject: RCPT from unknown[172.17.0.1]: 554 5.7.1 <x@foreign.example>: Relay access denied; from=<probe@outside.example> to=<x@foreign.example> proto=ESMTP helo=<client.e2e.example>\n"
	agentLog = pfx + "altpostlocal[202]: level=INFO msg=delivery queue_id=8249FCC265 sender=\"\" recipient=postmaster@e2e.example orig_recipient=postmaster@e2e.example key=postmaster@e2e.example actions=\"maildir:/var/mail/vmail/e2e.example/postmaster/Maildir=ok\" outcome=delivered exit=0 duration_ms=7\n"
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
		{name: "lmtp to the agent: its deferral then delivery", log: received + lmtpDefer + lmtpSent + removed},
		{name: "lmtp: the agent down fires unless expected", log: received + lmtpRefused,
			want: []string{"a deferral the agent did not ask for"}},
		{name: "lmtp: the agent killed by the scenario", log: received + lmtpRefused + lmtpSent,
			expect: Expect{Deferrals: []string{"/run/altpostlocal/lmtp]: Connection refused"}}},
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
		{name: "smarthost deferrals of a forward", log: fwdRefused + fwdNoName + fwd451 + fwdSent, expect: forward},
		{name: "smarthost deferrals without a forward rule fire", log: fwd451,
			want: []string{"relayed: Postfix's SMTP client delivered to a recipient no forward rule names"}},
		{name: "a rejected forward, its notice to our postmaster", log: fwd550 + fwdNoticeQ + fwdNotice + fwdNoticeIn, expect: forward},
		{name: "a rejected forward not provoked fires", log: fwd550 + fwdNoticeQ + fwdNotice + fwdNoticeIn,
			expect: Expect{Outbound: forward.Outbound, NoticeTo: forward.NoticeTo}, want: []string{
				"a notice (bounce or receipt) was made",
				"a message from the null sender entered the queue",
				"bounced"}},
		{name: "a notice of a rejected forward sent outward fires", log: fwd550 + fwdNoticeQ + fwdNotice + fwdNoticeOut, expect: forward,
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

// TestCheckRecorded replays whole container logs recorded from e2e runs:
// each is clean with what its scenario expects, and the oracle fires when
// the expectation is taken away (or, for exit78, always).
func TestCheckRecorded(t *testing.T) {
	for _, tc := range []struct {
		file      string
		expect    Expect
		clean     bool
		withoutIt string // the first violation with the zero Expect
	}{
		{"neverbounce.log", Expect{}, true, ""},
		{"forward.log", forward, true, "a notice (bounce or receipt) was made"},
		{"exit78.log", Expect{}, false, "a bounce that soft_bounce turned into a deferral (the agent exited with a code that bounces)"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			log, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(log), "status=sent") {
				t.Fatalf("%s: no delivery in the recording", tc.file)
			}
			got := Check(string(log), nil, tc.expect)
			if tc.clean && len(got) != 0 {
				t.Errorf("with its scenario's Expect:\n%s", join(got))
			}
			if !tc.clean && len(got) == 0 {
				t.Errorf("the oracle is silent")
			}
			if tc.withoutIt != "" {
				got = Check(string(log), nil, Expect{})
				if len(got) == 0 || got[0].Why != tc.withoutIt {
					t.Errorf("with nothing expected:\n%s\nwant first: %s", join(got), tc.withoutIt)
				}
			}
		})
	}
}
