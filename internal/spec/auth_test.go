package spec

import (
	"strings"
	"testing"

	"quietmx/internal/authres"
)

// authHead is a valid spec with two mailboxes sharing the appliance; rows
// append to it (their own lines start at line 9).
const authHead = `hostname: mail.example.com
domains: [example.com]
mailboxes:
  - login: me@example.com
    password_hash: "` + hash + `"
  - login: you@example.com
    password_hash: "` + hash + `"
    maildir: /var/mail/vmail/example.com/you/Maildir
`

// TestAuth: off by default, the appliance's switch, a mailbox overriding
// it key by key, the environment winning over the YAML.
func TestAuth(t *testing.T) {
	on := authres.Methods{DKIM: true, DMARC: true}
	dkim := authres.Methods{DKIM: true}
	for _, tc := range []struct {
		name      string
		yaml      string
		env       map[string]string
		appliance authres.Methods
		mailboxes string // the second mailbox's own auth:, indented
		me, you   authres.Methods
	}{
		{name: "default: SPF only"},
		{name: "empty", yaml: "auth:\n"},
		{name: "the one line", yaml: "auth: {dkim: true, dmarc: true}\n", appliance: on, me: on, you: on},
		{name: "dmarc implies dkim", yaml: "auth: {dmarc: yes}\n", appliance: on, me: on, you: on},
		{name: "dkim alone", yaml: "auth: {dkim: true}\n", appliance: dkim, me: dkim, you: dkim},
		{name: "arc false is fine", yaml: "auth: {arc: false}\n"},
		{name: "a mailbox opts in", mailboxes: "    auth: {dmarc: true}\n", you: on},
		{name: "a mailbox opts out of dmarc only", yaml: "auth: {dkim: true, dmarc: true}\n", mailboxes: "    auth: {dmarc: false}\n",
			appliance: on, me: on, you: dkim},
		{name: "environment", env: map[string]string{"QUIETMX_AUTH_DMARC": "1"}, appliance: on, me: on, you: on},
		{name: "environment over yaml", yaml: "auth: {dkim: true}\n", env: map[string]string{"QUIETMX_AUTH_DKIM": "false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Load("quietmx.yaml", []byte(authHead+tc.mailboxes+tc.yaml), tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if s.Auth != tc.appliance {
				t.Errorf("appliance: got %+v, want %+v", s.Auth, tc.appliance)
			}
			if got := s.Mailboxes[0].Auth; got != tc.me {
				t.Errorf("me: got %+v, want %+v", got, tc.me)
			}
			if got := s.Mailboxes[1].Auth; got != tc.you {
				t.Errorf("you: got %+v, want %+v", got, tc.you)
			}
			if got := s.AuthFor(s.Mailboxes[1].Maildir); got != tc.you {
				t.Errorf("AuthFor(you): got %+v, want %+v", got, tc.you)
			}
			if got := s.AuthFor("/elsewhere"); got != tc.appliance {
				t.Errorf("AuthFor(elsewhere): got %+v, want %+v", got, tc.appliance)
			}
		})
	}
}

// TestAuthBadInput: every mistake is an error at its line, ARC included
// (nobody may believe ARC results are checked).
func TestAuthBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"arc", "auth: {arc: true}\n", nil,
			`quietmx.yaml:9:13: auth.arc: ARC verification is not available; remove the key or set it to false`},
		{"unknown key", "auth: {dkm: true}\n", nil,
			`quietmx.yaml:9:8: auth.dkm: unknown key "dkm" (did you mean dkim?)`},
		{"not a bool", "auth: {dmarc: sometimes}\n", nil,
			`quietmx.yaml:9:15: auth.dmarc: want true or false (also yes/no, on/off, unquoted), got "sometimes"`},
		{"not a mapping", "auth: on\n", nil,
			`quietmx.yaml:9:7: auth: want a mapping (dkim, dmarc, arc), got "on"`},
		{"mailbox arc", "", nil, ""},
		{"env not a bool", "", map[string]string{"QUIETMX_AUTH_DKIM": "perhaps"},
			`QUIETMX_AUTH_DKIM: want true or false, got "perhaps"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := authHead + tc.yaml
			want := tc.want
			if tc.name == "mailbox arc" {
				src = authHead + "    auth: {arc: yes}\n"
				want = `quietmx.yaml:9:17: mailboxes[1].auth.arc: ARC verification is not available; remove the key or set it to false`
			}
			_, err := Load("quietmx.yaml", []byte(src), tc.env)
			if err == nil {
				t.Fatalf("no error, want %s", want)
			}
			if got := strings.TrimSpace(err.Error()); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// A dmarc_fail: that can never act (DMARC checked nowhere) is a warning.
func TestDMARCFailWithoutDMARC(t *testing.T) {
	rules := "rules:\n  default: {type: maildir, value: /var/mail/vmail/me/Maildir}\n  dmarc_fail: {me: refuse}\n"
	for _, tc := range []struct {
		name, yaml string
		warn       bool
	}{
		{"dmarc off", rules, true},
		{"dmarc on", rules + "auth: {dmarc: true}\n", false},
		{"dmarc on for one mailbox", "    auth: {dmarc: true}\n" + rules, false},
		{"deliver only", strings.Replace(rules, "refuse", "deliver", 1), false},
	} {
		s, err := Load("quietmx.yaml", []byte(authHead+tc.yaml), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := strings.Contains(strings.Join(s.Warnings, "\n"), "DMARC is not checked")
		if got != tc.warn {
			t.Errorf("%s: warning %v, want %v: %q", tc.name, got, tc.warn, s.Warnings)
		}
	}
}
