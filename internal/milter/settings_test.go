package milter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"quietmx/internal/authres"
	"quietmx/internal/rules"
)

func TestSettings(t *testing.T) {
	on := authres.Methods{DKIM: true, DMARC: true}
	dkim := authres.Methods{DKIM: true}
	s := Settings{Hostname: "mx.example.com", Default: dkim, Maildirs: map[string]authres.Methods{"/m/me/Maildir": on, "/m/you/Maildir": {}}}
	for _, tc := range []struct {
		name     string
		maildirs []string
		want     authres.Methods
	}{
		{"no maildir: default", nil, dkim},
		{"a mailbox", []string{"/m/me/Maildir/"}, on},
		{"a mailbox that opted out", []string{"/m/you/Maildir"}, authres.Methods{}},
		{"both: union", []string{"/m/you/Maildir", "/m/me/Maildir"}, on},
		{"elsewhere: default", []string{"/m/other"}, dkim},
	} {
		if got := s.Methods(tc.maildirs); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}

	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "altpostlocal.yaml")
	if got := SettingsPath(rulesPath); got != filepath.Join(dir, SettingsFile) {
		t.Errorf("SettingsPath = %s", got)
	}
	for _, tc := range []struct{ name, data, err string }{
		{"good", `{"hostname":"mx.example.com","default":{"dkim":true,"dmarc":false}}`, ""},
		{"no hostname", `{"default":{}}`, "no hostname"},
		{"garbage", `{`, "unexpected end"},
	} {
		p := filepath.Join(dir, tc.name+".json")
		if err := os.WriteFile(p, []byte(tc.data), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := ReadSettings(p)
		if tc.err == "" && (err != nil || got.Hostname != "mx.example.com" || got.Default != dkim) {
			t.Errorf("%s: %+v, %v", tc.name, got, err)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
	if _, err := ReadSettings(filepath.Join(dir, "absent.json")); err == nil {
		t.Error("absent file: no error")
	}
}

func TestSettingsPolicy(t *testing.T) {
	on := authres.Methods{DKIM: true, DMARC: true}
	set, fs := rules.Parse("r.yaml", []byte(`
aliases:
  me: {type: maildir, value: /m/me/Maildir}
  ext: {type: forward, value: x@elsewhere.example}
dmarc_fail:
  me: refuse
`))
	if set == nil || fs.HasErrors() {
		t.Fatal(fs)
	}
	s := Settings{Hostname: "mx.example.com", Maildirs: map[string]authres.Methods{"/m/me/Maildir": on}}
	if got := s.Policy(set, "me@example.com"); got != (authres.Policy{Methods: on, DMARCFail: authres.Refuse}) {
		t.Errorf("me: %+v", got)
	}
	if got := s.Policy(set, "ext@example.com"); got != (authres.Policy{DMARCFail: authres.Deliver}) {
		t.Errorf("ext: %+v", got)
	}
	if got := s.Policy(nil, "me@example.com"); got != (authres.Policy{}) {
		t.Errorf("no rules: %+v", got)
	}
}
