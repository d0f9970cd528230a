package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"quietmx/internal/rules"
	"quietmx/internal/spec"
)

// TestSMTPHygiene pins what a cipher scan of port 25 cannot see from a Go
// client: no anonymous or null suite, no finite-field DH (so no group
// under 2048 bits), and ETRN neither advertised nor served.
func TestSMTPHygiene(t *testing.T) {
	for _, c := range examples {
		t.Run(c.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(c.render(t, cheap), MainCF))
			if err != nil {
				t.Fatal(err)
			}
			params := map[string]string{}
			for _, line := range strings.Split(string(data), "\n") {
				if k, v, ok := strings.Cut(line, " = "); ok && !strings.HasPrefix(k, "#") {
					params[k] = v
				}
			}
			has := func(key string, want ...string) {
				t.Helper()
				got := strings.Split(params[key], ",")
				for i := range got {
					got[i] = strings.TrimSpace(got[i])
				}
				for _, w := range want {
					found := false
					for _, g := range got {
						found = found || g == w
					}
					if !found {
						t.Errorf("%s = %q: want %s in it", key, params[key], w)
					}
				}
			}
			has("smtpd_tls_exclude_ciphers", "aNULL", "eNULL", "EXPORT", "kDHE")
			has("smtpd_tls_mandatory_exclude_ciphers", "$smtpd_tls_exclude_ciphers")
			has("smtpd_discard_ehlo_keywords", "etrn")
			has("smtpd_etrn_restrictions", "reject")
			for _, k := range []string{"smtpd_tls_dh1024_param_file", "tls_dh1024_param_file", "smtpd_tls_ciphers"} {
				if v, ok := params[k]; ok {
					t.Errorf("%s = %q: leave it to the ECDHE-only list", k, v)
				}
			}
		})
	}
}

func TestRescueFolder(t *testing.T) {
	me := spec.Mailbox{Login: "me@example.com", Maildir: "/var/mail/vmail/example.com/me/Maildir"}
	tests := []struct {
		name, rescue, want string
	}{
		{"generated", me.Rescue(), "Rescue"},
		{"another folder", me.Maildir + "/.Lost-Found/new", "Lost-Found"},
		{"trailing slash", me.Maildir + "/.Rescue/new/", "Rescue"},
		{"plain directory", "/var/mail/vmail/rescue", ""},
		{"not new", me.Maildir + "/.Rescue", ""},
		{"inbox itself", me.Maildir + "/new", ""},
		{"nested", me.Maildir + "/.A.B/new", ""},
		{"declared already", me.Maildir + "/.Junk/new", ""},
		{"not a mailbox", "/var/mail/other/Maildir/.Rescue/new", ""},
		{"none", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &spec.Spec{Mailboxes: []spec.Mailbox{me}, Rules: spec.Rules{Set: &rules.Set{Rescue: tt.rescue}}}
			if got := RescueFolder(s); got != tt.want {
				t.Errorf("RescueFolder(%q) = %q, want %q", tt.rescue, got, tt.want)
			}
		})
	}
}
