//go:build e2e

package e2e

// Issue 7, scenarios 1-4: several domains, routing, pipe filters, junk,
// drops and dumps. Each test runs one appliance with its own spec; mail
// goes in through the published port 25 and is read over verified IMAPS.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// ---------------------------------------------------------------------------
// 1. Several domains.

const severalDomainsSpec = `hostname: mail.e2e.example
domains:
  - d1.example
  - d2.example
  - d3.example
# No rules: each login gets its own mail (generated rules).
mailboxes:
  - login: a@d1.example
    password_file: pw
  - login: a@d2.example
    password_file: pw
  - login: a@d3.example
    password_file: pw
`

// eightBitMessage has raw 8-bit bytes in a header and the body: UTF-8,
// Latin-1 and Shift_JIS (so not valid UTF-8), plus a line starting with a
// dot (dot-stuffing) and one starting with "From " (no mbox escaping).
func eightBitMessage(from, to string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: 8bit caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\r\n", from, to)
	fmt.Fprintf(&b, "Message-ID: <8bit.%d@outside.example>\r\nDate: %s\r\n", time.Now().UnixNano(), time.Now().Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString("UTF-8: \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88 na\xc3\xafve\r\n")
	b.WriteString("Latin-1: caf\xe9 \xfc\xdf\xa9\r\n")
	b.WriteString("Shift_JIS: \x93\xfa\x96\x7b\x8c\xea\x82\xcc\x83\x65\x83\x4c\x83\x58\x83\x67\r\n")
	b.WriteString(".a line starting with a dot\r\n")
	b.WriteString("..two dots\r\n")
	b.WriteString("From the start of a line, no mbox escaping\r\n")
	b.WriteString("every byte 0x80-0xff: ")
	for c := 0x80; c <= 0xff; c++ {
		b.WriteByte(byte(c))
	}
	b.WriteString("\r\nend\r\n")
	return b.Bytes()
}

// iso2022jpMessage is Japanese mail as it is still often sent: 7-bit
// ISO-2022-JP with escape sequences, and an encoded-word Subject.
func iso2022jpMessage(from, to string) []byte {
	var b bytes.Buffer
	// "こんにちは" and "日本語のテスト" in ISO-2022-JP.
	hello := "\x1b$B$3$s$K$A$O\x1b(B"
	test := "\x1b$BF|K\\8l$N%F%9%H\x1b(B"
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: =?ISO-2022-JP?B?%s?=\r\n", from, to, base64.StdEncoding.EncodeToString([]byte(test)))
	fmt.Fprintf(&b, "Message-ID: <jis.%d@outside.example>\r\nDate: %s\r\n", time.Now().UnixNano(), time.Now().Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	fmt.Fprintf(&b, "%s\r\n%s %s\r\n\r\n-- \r\n%s\r\n", hello, test, hello, test)
	return b.Bytes()
}

// bigMessage has an attachment of size bytes (pseudo-random, so it does
// not compress), base64 in 76-character lines.
func bigMessage(from, to string, size int) []byte {
	data := make([]byte, size)
	r := rand.NewChaCha8([32]byte{7})
	r.Read(data)
	enc := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	b.Grow(len(enc)*78/76 + 4096)
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: 20 MiB attachment\r\n", from, to)
	fmt.Fprintf(&b, "Message-ID: <big.%d@outside.example>\r\nDate: %s\r\n", time.Now().UnixNano(), time.Now().Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"e2e-boundary\"\r\n\r\n")
	b.WriteString("--e2e-boundary\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe attachment follows.\r\n\r\n")
	b.WriteString("--e2e-boundary\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"random.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for len(enc) > 0 {
		n := min(76, len(enc))
		b.WriteString(enc[:n])
		b.WriteString("\r\n")
		enc = enc[n:]
	}
	b.WriteString("--e2e-boundary--\r\n")
	return b.Bytes()
}

// TestSeveralDomains: one login per domain (a@d1, a@d2, a@d3): each message
// lands in its own recipient's mailbox only, with the envelope in
// Return-Path and Delivered-To, and with its bytes intact (8-bit,
// ISO-2022-JP, a 20 MiB attachment); one message to all three makes three
// copies, each with its own Delivered-To.
func TestSeveralDomains(t *testing.T) {
	a := Start(t, Options{Spec: severalDomainsSpec, Files: rtFiles(nil)})
	const sender = "sender@outside.example"
	sent := map[string][]byte{
		"a@d1.example": eightBitMessage(sender, "a@d1.example"),
		"a@d2.example": iso2022jpMessage(sender, "a@d2.example"),
		"a@d3.example": bigMessage(sender, "a@d3.example", 20<<20),
	}
	boxes := []string{"a@d1.example", "a@d2.example", "a@d3.example"}
	for _, rcpt := range boxes {
		a.MustSend(sender, []string{rcpt}, sent[rcpt])
	}
	all := Message("list@outside.example", "a@d1.example", "to all three", "one transaction, three domains")
	a.MustSend("list@outside.example", boxes, all)

	// Six agent runs: three single messages, one per recipient of the last.
	a.waitAgentLines(6, 90*time.Second)
	for _, rcpt := range boxes {
		t.Run(rcpt, func(t *testing.T) {
			c := a.IMAP(rcpt, rtPassword)
			got := waitFolder(t, c, "INBOX", 2, 30*time.Second)
			if len(got) != 2 {
				t.Fatalf("INBOX of %s: %d messages, want exactly 2 (its own and the one to all)", rcpt, len(got))
			}
			var single, shared *trace
			for _, m := range got {
				tr := splitTrace(t, m)
				if bytes.Contains(tr.Body, []byte("one transaction, three domains")) {
					shared = &tr
				} else {
					single = &tr
				}
			}
			if single == nil || shared == nil {
				t.Fatalf("INBOX of %s: want its own message and the shared one", rcpt)
			}
			if single.ReturnPath != "<"+sender+">" || single.DeliveredTo != rcpt {
				t.Errorf("trace: Return-Path %q, Delivered-To %q; want <%s>, %s", single.ReturnPath, single.DeliveredTo, sender, rcpt)
			}
			if err := sameBytes(single.Body, sent[rcpt]); err != nil {
				t.Errorf("body not intact after the trace headers: %v", err)
			}
			if !strings.Contains(single.Received, "for <"+rcpt+">") {
				t.Errorf("Received header without this recipient: %q", single.Received)
			}
			if shared.ReturnPath != "<list@outside.example>" || shared.DeliveredTo != rcpt {
				t.Errorf("shared copy: Return-Path %q, Delivered-To %q; want <list@outside.example>, %s", shared.ReturnPath, shared.DeliveredTo, rcpt)
			}
			if err := sameBytes(shared.Body, all); err != nil {
				t.Errorf("shared copy not intact: %v", err)
			}
			// Nothing strayed into another folder of this account.
			for name, msgs := range allMessages(t, c) {
				if name != "INBOX" && len(msgs) > 0 {
					t.Errorf("%s: folder %s holds %d messages", rcpt, name, len(msgs))
				}
			}
		})
	}
	for _, l := range a.agentLines() {
		if l["outcome"] != "delivered" || l["exit"] != "0" || l["recipient"] != l["orig_recipient"] {
			t.Errorf("delivery line: %v", l)
		}
	}
	a.AssertNoBounce()
}

// ---------------------------------------------------------------------------
// 2. Routing.

// Every route of the rule language, with one IMAP account per real
// mailbox and a Maildir++ folder per kind of route, so where a message
// lands says which key matched.
const routingSpec = `hostname: mail.e2e.example
domains:
  - d1.example
  - d2.example
  - d3.example
mailboxes:
  - login: me@d1.example
    password_file: pw
  - login: you@d2.example
    password_file: pw
rules:
  x-boxes:
    me: &me
      type: maildir
      value: /var/mail/vmail/d1.example/me/Maildir
    you: &you
      type: maildir
      value: /var/mail/vmail/d2.example/you/Maildir
  # "+" and "-" both start an extension: me+news@, you-lists-x@.
  extension: "[+-]"
  rescue: /var/mail/vmail/rescue
  rematch:
    "^legacy@d3\\.example$": me@d1.example
  aliases:
    me@d1.example: *me
    you@d2.example: *you
    # One abuse@ for every domain.
    abuse:
      type: maildir
      value: /var/mail/vmail/d1.example/me/Maildir/.abuse
    # Exactly sales@d1.example, never sales+x@.
    "sales@d1.example=":
      type: maildir
      value: /var/mail/vmail/d1.example/me/Maildir/.sales
    "@d1.example":
      type: maildir
      value: /var/mail/vmail/d1.example/me/Maildir/.catchall
    "@d2.example":
      type: maildir
      value: /var/mail/vmail/d2.example/you/Maildir/.catchall
  default:
    type: maildir
    value: /var/mail/vmail/d1.example/me/Maildir/.default
  tests:
    - {address: abuse@d2.example, expect: abuse}
    - {address: me+news@d1.example, expect: me@d1.example}
`

type routeCase struct {
	rcpt        string
	user        string // IMAP login
	folder      string
	key         string // the key that matches (explain, and the log)
	deliveredTo string // recipient after rematch
}

var routeCases = []routeCase{
	{"me@d1.example", "me@d1.example", "INBOX", "me@d1.example", ""},
	{"me+news@d1.example", "me@d1.example", "INBOX", "me@d1.example", ""},
	{"you-lists-x@d2.example", "you@d2.example", "INBOX", "you@d2.example", ""},
	{"abuse@d1.example", "me@d1.example", "abuse", "abuse", ""},
	{"abuse@d2.example", "me@d1.example", "abuse", "abuse", ""},
	{"abuse+x@d3.example", "me@d1.example", "abuse", "abuse", ""},
	{"stranger@d1.example", "me@d1.example", "catchall", "@d1.example", ""},
	{"you@d1.example", "me@d1.example", "catchall", "@d1.example", ""},
	{"stranger@d2.example", "you@d2.example", "catchall", "@d2.example", ""},
	{"sales@d1.example", "me@d1.example", "sales", "sales@d1.example=", ""},
	{"sales+x@d1.example", "me@d1.example", "catchall", "@d1.example", ""},
	{"legacy@d3.example", "me@d1.example", "INBOX", "me@d1.example", "me@d1.example"},
	{"nobody@d3.example", "me@d1.example", "default", "default", ""},
}

// TestRouting: the domain-less alias (abuse@ of every domain), catch-alls
// that do not swallow real mailboxes or aliases, plus-addressing with "+"
// and a regexp extension, exact addr= keys, rematch and default, each
// message landing where its key says, and `quietmx explain` naming the
// same key as the delivery.
func TestRouting(t *testing.T) { forEachDelivery(t, testRouting) }

func testRouting(t *testing.T, delivery string) {
	a := Start(t, Options{Spec: routingSpec, Files: rtFiles(nil), Delivery: delivery})
	const sender = "router@outside.example"
	for i, rc := range routeCases {
		a.MustSend(sender, []string{rc.rcpt}, Message(sender, rc.rcpt, fmt.Sprintf("route-%02d %s", i, rc.rcpt), "routing test"))
	}
	lines := a.waitAgentLines(len(routeCases), 60*time.Second)

	// Where each message landed: subject → account/folder.
	type place struct{ user, folder string }
	landed := map[string][]place{}
	msgs := map[string][]byte{}
	for _, user := range []string{"me@d1.example", "you@d2.example"} {
		c := a.IMAP(user, rtPassword)
		for folder, ms := range allMessages(t, c) {
			for _, m := range ms {
				s := subjectOf(m)
				landed[s] = append(landed[s], place{user, folder})
				msgs[s] = m
			}
		}
	}

	// What explain says, for every address at once.
	args := []string{"quietmx", "explain", "--json", "-f", sender}
	for _, rc := range routeCases {
		args = append(args, rc.rcpt)
	}
	var reports []struct {
		Address, Recipient, Key, Error string
	}
	if err := json.Unmarshal([]byte(a.MustExec(args...)), &reports); err != nil || len(reports) != len(routeCases) {
		t.Fatalf("quietmx explain --json: %v (%d reports)", err, len(reports))
	}

	for i, rc := range routeCases {
		t.Run(rc.rcpt, func(t *testing.T) {
			subj := fmt.Sprintf("route-%02d %s", i, rc.rcpt)
			want := []place{{rc.user, rc.folder}}
			if got := landed[subj]; !slices.Equal(got, want) {
				t.Errorf("landed in %v, want %v", got, want)
			}
			deliveredTo := rc.deliveredTo
			if deliveredTo == "" {
				deliveredTo = rc.rcpt
			}
			if m, ok := msgs[subj]; ok {
				tr := splitTrace(t, m)
				if tr.ReturnPath != "<"+sender+">" || tr.DeliveredTo != deliveredTo {
					t.Errorf("Return-Path %q, Delivered-To %q; want <%s>, %s", tr.ReturnPath, tr.DeliveredTo, sender, deliveredTo)
				}
			}
			if r := reports[i]; r.Key != rc.key || r.Recipient != deliveredTo || r.Error != "" {
				t.Errorf("quietmx explain %s: key %q, recipient %q, error %q; want key %q, recipient %q",
					rc.rcpt, r.Key, r.Recipient, r.Error, rc.key, deliveredTo)
			}
			// The delivery log names the same key.
			var line agentLine
			for _, l := range lines {
				if l["orig_recipient"] == rc.rcpt {
					line = l
				}
			}
			if line["key"] != rc.key || line["recipient"] != deliveredTo || line["outcome"] != "delivered" {
				t.Errorf("delivery line: key %q, recipient %q, outcome %q; want key %q, recipient %q, delivered",
					line["key"], line["recipient"], line["outcome"], rc.key, deliveredTo)
			}
		})
	}
	// The explain text form prints the same key.
	if out := a.MustExec("quietmx", "explain", "abuse+x@d3.example"); !strings.Contains(out, "\n  matched: abuse\n") {
		t.Errorf("quietmx explain abuse+x@d3.example:\n%s", out)
	}
	a.AssertNoBounce()
}

// ---------------------------------------------------------------------------
// 3. Pipe filters.

// filter.sh delivers the message itself, into a folder of me's Maildir,
// with the envelope it was given in two headers of its own.
const filterScript = `#!/bin/sh
# A user's filter: the message on stdin, the envelope in $1 and $2.
set -eu
box=/var/mail/vmail/d1.example/me/Maildir/.filtered
mkdir -p "$box/tmp" "$box/new" "$box/cur"
name="$(date +%s).filter$$.e2e"
{ printf 'X-Filter-Sender: %s\nX-Filter-Recipient: %s\n' "$1" "$2"; cat; } > "$box/tmp/$name"
mv "$box/tmp/$name" "$box/new/$name"
`

const failingScript = `#!/bin/sh
echo "filter refuses mail for $1" >&2
exit 3
`

// hang.sh never ends, and neither does its child.
const hangingScript = `#!/bin/sh
sleep 1000
`

const pipeSpec = `hostname: mail.e2e.example
domains:
  - d1.example
mailboxes:
  - login: me@d1.example
    password_file: pw
rules:
  rescue: /var/mail/vmail/rescue
  aliases:
    filter@d1.example:
      type: pipe
      cmd: /etc/quietmx/appliance/filter.sh
      args: ["${sender}", "${recipient}"]
      timeout: 30
    failing@d1.example:
      type: pipe
      cmd: /etc/quietmx/appliance/fail.sh
      args: ["${recipient}"]
      timeout: 30
      onerror:
        type: maildir
        value: /var/mail/vmail/d1.example/me/Maildir/.onerror
    hanging@d1.example:
      type: pipe
      cmd: /etc/quietmx/appliance/hang.sh
      timeout: 2
  default:
    type: maildir
    value: /var/mail/vmail/d1.example/me/Maildir
`

// TestPipeFilter: a filter script from the spec directory gets the
// message and ${sender}/${recipient}; a failing filter's message goes to
// its onerror; a hanging filter is killed (with its child) at its timeout
// and the message is rescued, not lost.
func TestPipeFilter(t *testing.T) {
	a := Start(t, Options{
		Spec:  pipeSpec,
		Files: rtFiles(map[string]string{"filter.sh": filterScript, "fail.sh": failingScript, "hang.sh": hangingScript}),
		Modes: map[string]os.FileMode{"filter.sh": 0o755, "fail.sh": 0o755, "hang.sh": 0o755},
	})
	const sender = "piper@outside.example"
	sent := map[string][]byte{}
	for _, rcpt := range []string{"filter@d1.example", "failing@d1.example", "hanging@d1.example"} {
		sent[rcpt] = Message(sender, rcpt, "pipe to "+rcpt, "pipe test body for "+rcpt)
		a.MustSend(sender, []string{rcpt}, sent[rcpt])
	}
	c := a.IMAP("me@d1.example", rtPassword)

	t.Run("filter gets the message and the envelope", func(t *testing.T) {
		got := waitFolder(t, c, "filtered", 1, 30*time.Second)
		if len(got) != 1 {
			t.Fatalf("filtered: %d messages, want 1", len(got))
		}
		m := got[0]
		for _, want := range []string{
			"X-Filter-Sender: " + sender + "\r\n",
			"X-Filter-Recipient: filter@d1.example\r\n",
			"Return-Path: <" + sender + ">\r\n",
			"Delivered-To: filter@d1.example\r\n",
		} {
			if !bytes.Contains(m, []byte(want)) {
				t.Errorf("the filter's message lacks %q:\n%s", want, head(m))
			}
		}
		if !bytes.HasSuffix(m, sent["filter@d1.example"]) {
			t.Errorf("the filter did not get the whole message:\n%s", m)
		}
		l := a.waitAgentLine("filter@d1.example", 10*time.Second)
		if l["outcome"] != "delivered" || !strings.Contains(l["actions"], "=ok") {
			t.Errorf("delivery line: %v", l)
		}
	})

	t.Run("failing filter goes to onerror", func(t *testing.T) {
		got := waitFolder(t, c, "onerror", 1, 30*time.Second)
		if len(got) != 1 || !bytes.HasSuffix(got[0], sent["failing@d1.example"]) {
			t.Fatalf("onerror: %d messages, want the failing filter's message", len(got))
		}
		l := a.waitAgentLine("failing@d1.example", 10*time.Second)
		if l["outcome"] != "delivered" || l["exit"] != "0" || !strings.Contains(l["actions"], "failed") ||
			!strings.Contains(l["actions"], "/.onerror") {
			t.Errorf("delivery line: %v", l)
		}
	})

	t.Run("hanging filter is killed and the message rescued", func(t *testing.T) {
		l := a.waitAgentLine("hanging@d1.example", 60*time.Second)
		if l["outcome"] != "rescued" || l["exit"] != "0" {
			t.Fatalf("delivery line: outcome %q exit %q, want rescued 0: %v", l["outcome"], l["exit"], l)
		}
		if ms, err := time.ParseDuration(l["duration_ms"] + "ms"); err != nil || ms < 2*time.Second || ms > 20*time.Second {
			t.Errorf("the hanging filter ran %s ms, want its 2 s timeout", l["duration_ms"])
		}
		// The rescue copy, whole, exactly once.
		out := a.MustExec("sh", "-c", "grep -rlF 'pipe to hanging@d1.example' /var/mail/vmail/rescue")
		files := strings.Fields(out)
		if len(files) != 1 {
			t.Fatalf("rescue copies: %q, want one", out)
		}
		rescued := a.MustExec("cat", files[0])
		body := strings.ReplaceAll(string(sent["hanging@d1.example"]), "\r\n", "\n")
		if !strings.HasSuffix(rescued, body) || !strings.Contains(rescued, "Return-Path: <"+sender+">") {
			t.Errorf("rescue copy %s:\n%s", files[0], rescued)
		}
		// The filter and its child were killed.
		for _, p := range a.processes() {
			if strings.Contains(p, "hang.sh") || strings.Contains(p, "sleep 1000") {
				t.Errorf("still running after the timeout: %s", p)
			}
		}
		// Not lost, not deferred, not bounced.
		a.WaitQueueEmpty(10 * time.Second)
	})

	// Nothing landed anywhere else.
	for name, msgs := range allMessages(t, c) {
		if name != "filtered" && name != "onerror" && len(msgs) > 0 {
			t.Errorf("folder %s holds %d messages", name, len(msgs))
		}
	}
	a.AssertNoBounce()
}

// ---------------------------------------------------------------------------
// 4. Junk, drops and dumps.

const junkSpec = `hostname: mail.e2e.example
domains:
  - d1.example
mailboxes:
  - login: me@d1.example
    password_file: pw
rules:
  x-me: &me
    type: maildir
    value: /var/mail/vmail/d1.example/me/Maildir
  rescue: /var/mail/vmail/rescue
  aliases:
    me@d1.example: *me
    junk@d1.example:
      type: maildir
      value: /var/mail/vmail/d1.example/me/Maildir
      junk: true
    nothing@d1.example:
      type: nothing
    discard@d1.example:
      type: discard
    empty@d1.example: []
    dump@d1.example:
      - type: dump
        value: /var/mail/vmail/dumps
      - type: maildir
        value: /var/mail/vmail/d1.example/me/Maildir/.direct
  default: *me
`

// The rule file the dump is redelivered with (-c), from the spec
// directory: everything into one folder.
const redeliverRules = `default:
  type: maildir
  value: /var/mail/vmail/d1.example/me/Maildir/.redelivered
`

// TestJunkAndDrops: junk: true lands in the Junk folder IMAP lists with
// \Junk; nothing, discard and [] drop the message and log outcome=dropped;
// a dump, redelivered with `altpostlocal -j`, is byte for byte the message
// a direct delivery wrote (non-UTF-8 bytes included).
func TestJunkAndDrops(t *testing.T) {
	a := Start(t, Options{Spec: junkSpec, Files: rtFiles(map[string]string{"redeliver.yaml": redeliverRules})})
	const sender = "junker@outside.example"
	c := a.IMAP("me@d1.example", rtPassword)

	t.Run("junk", func(t *testing.T) {
		msg := Message(sender, "junk@d1.example", "junk please", "this is junk")
		a.MustSend(sender, []string{"junk@d1.example"}, msg)
		got := waitFolder(t, c, "Junk", 1, 30*time.Second)
		if len(got) != 1 || !bytes.HasSuffix(got[0], msg) {
			t.Fatalf("Junk: %d messages, want the junk message", len(got))
		}
		attrs, ok := folders(t, c)["Junk"]
		if !ok || !slices.Contains(attrs, imap.MailboxAttrJunk) {
			t.Errorf("IMAP LIST: Junk has attributes %v, want \\Junk", attrs)
		}
		if in := readFolder(t, c, "INBOX"); len(in) != 0 {
			t.Errorf("INBOX holds %d messages, want 0", len(in))
		}
	})

	t.Run("nothing, discard and [] drop", func(t *testing.T) {
		drops := []string{"nothing@d1.example", "discard@d1.example", "empty@d1.example"}
		for _, rcpt := range drops {
			a.MustSend(sender, []string{rcpt}, Message(sender, rcpt, "drop "+rcpt, "dropped"))
		}
		for _, rcpt := range drops {
			l := a.waitAgentLine(rcpt, 30*time.Second)
			if l["outcome"] != "dropped" || l["exit"] != "0" || l["key"] != rcpt {
				t.Errorf("delivery line for %s: %v, want outcome=dropped exit=0 key=%s", rcpt, l, rcpt)
			}
		}
		// A message sent after the drops arrives, and alone.
		ctl := Message(sender, "me@d1.example", "after the drops", "control")
		a.MustSend(sender, []string{"me@d1.example"}, ctl)
		got := waitFolder(t, c, "INBOX", 1, 30*time.Second)
		for name, msgs := range allMessages(t, c) {
			for _, m := range msgs {
				if s := subjectOf(m); strings.HasPrefix(s, "drop ") {
					t.Errorf("dropped message %q is in %s", s, name)
				}
			}
		}
		if len(got) != 1 || subjectOf(got[0]) != "after the drops" {
			t.Errorf("INBOX: %d messages, want only the control message", len(got))
		}
		a.WaitQueueEmpty(10 * time.Second)
	})

	t.Run("dump redelivered byte for byte", func(t *testing.T) {
		msg := eightBitMessage(sender, "dump@d1.example")
		a.MustSend(sender, []string{"dump@d1.example"}, msg)
		direct := waitFolder(t, c, "direct", 1, 30*time.Second)
		l := a.waitAgentLine("dump@d1.example", 10*time.Second)
		if l["outcome"] != "delivered" || !strings.Contains(l["actions"], "dump:/var/mail/vmail/dumps=ok") {
			t.Fatalf("delivery line: %v", l)
		}
		files := strings.Fields(a.MustExec("find", "/var/mail/vmail/dumps", "-type", "f", "-name", "*.json"))
		if len(files) != 1 {
			t.Fatalf("dumps: %v, want one", files)
		}
		// Shift_JIS and Latin-1 are not UTF-8: the bytes are in mail_base64.
		var d struct {
			Sender     string   `json:"sender"`
			Recipients []string `json:"recipients"`
			Mail       *string  `json:"mail"`
			MailBase64 string   `json:"mail_base64"`
		}
		if err := json.Unmarshal([]byte(a.MustExec("cat", files[0])), &d); err != nil {
			t.Fatalf("dump %s: %v", files[0], err)
		}
		if d.Sender != sender || !slices.Equal(d.Recipients, []string{"dump@d1.example"}) || d.Mail != nil || d.MailBase64 == "" {
			t.Errorf("dump: sender %q recipients %v, mail set %v, mail_base64 %d bytes", d.Sender, d.Recipients, d.Mail != nil, len(d.MailBase64))
		}
		// Redeliver it as the agent runs under Postfix: as vmail.
		code, out := a.Exec("setpriv", "--reuid=vmail", "--regid=vmail", "--clear-groups", "--",
			"altpostlocal", "-c", "/etc/quietmx/appliance/redeliver.yaml", "-j", files[0])
		if code != 0 {
			t.Fatalf("altpostlocal -j: exit %d: %s", code, out)
		}
		again := waitFolder(t, c, "redelivered", 1, 30*time.Second)
		if len(direct) != 1 || len(again) != 1 {
			t.Fatalf("direct %d, redelivered %d messages, want 1 and 1", len(direct), len(again))
		}
		if err := sameBytes(again[0], direct[0]); err != nil {
			t.Errorf("redelivered copy differs from the direct delivery: %v", err)
		}
		tr := splitTrace(t, again[0])
		if err := sameBytes(tr.Body, msg); err != nil {
			t.Errorf("redelivered message differs from the one sent: %v", err)
		}
		if tr.ReturnPath != "<"+sender+">" || tr.DeliveredTo != "dump@d1.example" {
			t.Errorf("redelivered trace: Return-Path %q, Delivered-To %q", tr.ReturnPath, tr.DeliveredTo)
		}
	})
	a.AssertNoBounce()
}
