// Package rules reads AltPostLocal rule files: YAML bytes become an
// immutable, compiled *Set (regexps compiled, actions typed) plus every
// problem found, each with its line and column.
//
// Any error makes a rule file invalid: `altpostlocal check` exits 1, and
// delivery uses the last valid snapshot or defers (Load). A fatal error
// (YAML syntax, a top-level value of the wrong type, a regexp that does not
// compile, an extension that can match the empty string, an alias bomb)
// also means Parse returns a nil Set, so check cannot test routing. After
// an error inside one action (unknown type, missing field, relative path)
// the Set is kept for check's deeper tests, and that action carries a
// Problem that fails it should it ever run.
//
// The YAML layer (aliases, << merges, duplicate keys, booleans, unknown
// keys, diagnostics) is package yamlconf's, shared with the spec.
//
// DIAGNOSTICS
// Every finding names FILE:LINE:COL and a path such as
// aliases."foo@example.com"[1].type.
//
// SECURITY
// YAML aliases are expanded with yamlconf's budget, so an alias bomb
// ("billion laughs") is refused in milliseconds instead of exhausting memory.
package rules

import (
	"strings"
	"time"

	"quietmx/internal/authres"
)

// Action types, as in the original AltPostLocal.
const (
	TypeMaildir = "maildir"
	TypePipe    = "pipe"
	TypeForward = "forward"
	TypeDump    = "dump"
	TypeNothing = "nothing"
	TypeDiscard = "discard"
	TypeAlias   = "alias"
	// TypeReject is our addition: the address is refused at RCPT time
	// (550 5.1.1) by the policy service, before any action could run.
	TypeReject = "reject"
)

// Reject modes (top-level reject_mode).
const (
	RejectRefuse = "refuse" // the policy service answers 550 5.1.1 (the default)
	RejectLog    = "log"    // trial: it logs "would reject" and accepts
)

// RejectCode starts every refusal: 550 with the enhanced status "bad
// destination mailbox address" (RFC 3463), as Postfix says for an unknown
// user.
const RejectCode = "550 5.1.1"

// DefaultRejectText is a reject action's text when it has none. Postfix
// puts it after "<address>: Recipient address rejected: ".
const DefaultRejectText = "User unknown"

// MaxAliasHops caps how many alias actions one recipient may follow.
const MaxAliasHops = 20

// Set is a compiled rule file. It is never modified after Parse.
type Set struct {
	File          string
	Extension     *Pattern // nil: no extension shortening
	Rematch       []Rematch
	Aliases       map[string]*Entry
	Default       *Entry // nil: no default
	Rescue        string // directory; "" when unset
	RescueJSON    bool
	DieQuietly    bool
	ForwardSender string // envelope sender for forward actions; "" = agent default
	RejectMode    string // RejectRefuse or RejectLog; never "" after Parse
	Tests         []Test
	// DMARCFail is dmarc_fail: address key (as aliases:, plus default) →
	// what a DMARC failure does; nil when unset (auth.go).
	DMARCFail map[string]authres.Disposition

	// index serves Alias for a Set loaded from its compiled form, whose
	// entries are decoded only when looked up (Aliases is then nil).
	index *compiledIndex
}

// Alias returns the entry for key, or nil. Routing goes through it, so a
// compiled Set decodes only the entries a delivery needs.
func (s *Set) Alias(key string) *Entry {
	if s.index != nil {
		return s.index.lookup(key)
	}
	return s.Aliases[key]
}

// Rematch replaces a recipient that Pattern matches by Target.
type Rematch struct {
	Pattern *Pattern
	Target  string
	Pos     Pos
}

// Entry is the action list under one key of aliases (or default).
type Entry struct {
	Key     string    `json:"key"`
	Actions []*Action `json:"actions"` // empty: do nothing on purpose
	Pos     Pos       `json:"pos"`
}

// Action is one delivery step. Fields not used by Type are zero.
type Action struct {
	Type      string        `json:"type"`
	Value     string        `json:"value,omitempty"`     // maildir/dump directory, alias address
	Addresses []string      `json:"addresses,omitempty"` // forward targets
	Junk      bool          `json:"junk,omitempty"`
	Cmd       string        `json:"cmd,omitempty"`
	Args      []string      `json:"args,omitempty"`
	Timeout   time.Duration `json:"timeout,omitempty"` // 0: none
	OnError   *Action       `json:"onerror,omitempty"`
	// Problem is set when the action cannot run (unknown type, missing
	// field...). Running it fails with this message, which sends the
	// message to onerror or rescue instead of losing it.
	Problem string `json:"problem,omitempty"`
	Text    string `json:"text,omitempty"` // reject: the reply text after "550 5.1.1"
	Pos     Pos    `json:"pos"`
}

// Rejection returns the entry's reject action when the entry is one valid
// reject and nothing else (the only place parsing allows one), or nil.
func (e *Entry) Rejection() *Action {
	if e == nil || len(e.Actions) != 1 {
		return nil
	}
	if a := e.Actions[0]; a.Type == TypeReject && a.Problem == "" {
		return a
	}
	return nil
}

// RejectReply is the SMTP reply a reject action gives at RCPT time:
// "550 5.1.1 " and its text (DefaultRejectText when it has none).
func (a *Action) RejectReply() string {
	text := a.Text
	if text == "" {
		text = DefaultRejectText
	}
	return RejectCode + " " + text
}

// Test is one routing expectation from the top-level tests: list.
type Test struct {
	Address string `json:"address"`
	Sender  string `json:"sender,omitempty"`
	Expect  string `json:"expect"` // a key, or an action summary such as "maildir:/var/mail/x"
	Pos     Pos    `json:"pos"`
}

// Summary describes the action in one word-ish token, as logs, explain and
// routing tests show it: "maildir:/var/mail/a/Maildir", "maildir:/x (junk)",
// "pipe:/usr/bin/filter", "forward:a@b,c@d", "discard".
func (a *Action) Summary() string {
	switch {
	case a.Problem != "":
		return "invalid(" + a.Type + ")"
	case a.Type == TypeMaildir && a.Junk:
		return "maildir:" + a.Value + " (junk)"
	case a.Type == TypeMaildir, a.Type == TypeDump, a.Type == TypeAlias:
		return a.Type + ":" + a.Value
	case a.Type == TypePipe:
		return "pipe:" + a.Cmd
	case a.Type == TypeForward:
		return "forward:" + strings.Join(a.Addresses, ",")
	case a.Type == TypeReject:
		return "reject (" + a.RejectReply() + ")"
	}
	return a.Type
}
