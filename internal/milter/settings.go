package milter

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"quietmx/internal/authres"
	"quietmx/internal/route"
	"quietmx/internal/rules"
)

// SettingsFile is the rendered file that tells the resident agent how to
// run the filter, beside the rule file in the live tree: the spec's host
// name and auth: switches, which the rule file does not hold.
const SettingsFile = "auth.json"

// DefaultSocket is where the resident agent answers Postfix's smtpd
// (smtpd_milters): beside its LMTP socket, outside any chroot.
const DefaultSocket = "/run/altpostlocal/milter"

// Settings are the spec's part of the filter's configuration.
type Settings struct {
	// Hostname is the authserv-id (the spec's hostname).
	Hostname string `json:"hostname"`
	// Default are the methods for a recipient whose rules deliver into
	// none of Maildirs (the spec's auth:).
	Default authres.Methods `json:"default"`
	// Maildirs are the mailboxes' own methods (mailboxes[].auth), by
	// Maildir as a maildir action names it.
	Maildirs map[string]authres.Methods `json:"maildirs,omitempty"`
}

// SettingsPath is the settings file beside the rule file rulesPath.
func SettingsPath(rulesPath string) string {
	return filepath.Join(filepath.Dir(rulesPath), SettingsFile)
}

// ReadSettings reads the settings file at path.
func ReadSettings(path string) (Settings, error) {
	var s Settings
	data, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("milter settings: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("milter settings %s: %w", path, err)
	}
	if s.Hostname == "" {
		return s, fmt.Errorf("milter settings %s: no hostname", path)
	}
	return s, nil
}

// Methods are the methods for a recipient whose rules deliver into the
// given Maildirs: each Maildir's mailbox's, or the default for a Maildir
// of no mailbox, united (a method runs when anyone it concerns wants it);
// the default when the rules deliver into no Maildir.
func (s Settings) Methods(maildirs []string) authres.Methods {
	if len(maildirs) == 0 {
		return s.Default
	}
	var m authres.Methods
	for _, d := range maildirs {
		mm, ok := s.Maildirs[filepath.Clean(d)]
		if !ok {
			mm = s.Default
		}
		m = m.Union(mm)
	}
	return m
}

// Policy is one recipient's policy under the rule set: the methods of the
// Maildirs its rules deliver into (Methods) and its dmarc_fail: setting.
func (s Settings) Policy(set *rules.Set, rcpt string) authres.Policy {
	if set == nil {
		return authres.Policy{Methods: s.Default}
	}
	var maildirs []string
	for _, pl := range route.Resolve(set, rcpt).Actions {
		if pl.Action.Type == rules.TypeMaildir {
			maildirs = append(maildirs, pl.Action.Value)
		}
	}
	d, _ := route.DMARCFail(set, rcpt)
	return authres.Policy{Methods: s.Methods(maildirs), DMARCFail: d}
}
