package spec

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestProtection: defaults, the YAML, the environment winning over it.
func TestProtection(t *testing.T) {
	defaults := Protection{Pregreet: true, DNSBLThreshold: 1, ConnectionsPerClient: 5, ConnectionRate: 60, MessageRate: 120, RecipientRate: 300, IMAPFailuresPerMinute: 10}
	with := func(f func(p *Protection)) Protection {
		p := defaults
		f(&p)
		return p
	}
	for _, tc := range []struct {
		name string
		yaml string
		env  map[string]string
		want Protection
	}{
		{"defaults", "", nil, defaults},
		{"empty section", "protection:\n", nil, defaults},
		{"everything", `protection:
  pregreet: false
  deep_tests: yes
  dnsbl:
    sites: [zen.spamhaus.org*2, "bl.example.net=127.0.0.[2..11]*3", list.dnswl.org*-5]
    threshold: 3
  limits: {connections_per_client: 5, connection_rate: 0, message_rate: 30, recipient_rate: 100}
  imap: {failures_per_minute: 0}
`, nil, Protection{DeepTests: true, DNSBL: []string{"zen.spamhaus.org*2", "bl.example.net=127.0.0.[2..11]*3", "list.dnswl.org*-5"}, DNSBLThreshold: 3, ConnectionsPerClient: 5, MessageRate: 30, RecipientRate: 100}},
		{"environment", "protection: {pregreet: true, limits: {connection_rate: 30}}\n", map[string]string{
			"QUIETMX_SMTP_PREGREET":               "0",
			"QUIETMX_SMTP_DEEP_TESTS":             "true",
			"QUIETMX_DNSBL_SITES":                 " zen.spamhaus.org*2 , ,bl.spamcop.net",
			"QUIETMX_DNSBL_THRESHOLD":             "2",
			"QUIETMX_SMTP_CONNECTIONS_PER_CLIENT": "20",
			"QUIETMX_SMTP_CONNECTION_RATE":        "90",
			"QUIETMX_SMTP_MESSAGE_RATE":           "0",
			"QUIETMX_SMTP_RECIPIENT_RATE":         "1000",
			"QUIETMX_IMAP_FAILURES_PER_MINUTE":    " 3 ",
		}, Protection{DeepTests: true, DNSBL: []string{"zen.spamhaus.org*2", "bl.spamcop.net"}, DNSBLThreshold: 2, ConnectionsPerClient: 20, ConnectionRate: 90, RecipientRate: 1000, IMAPFailuresPerMinute: 3}},
		{"upper bounds", "protection: {limits: {connections_per_client: 20, connection_rate: 100000}, imap: {failures_per_minute: 1000}}\n", nil,
			with(func(p *Protection) {
				p.ConnectionsPerClient, p.ConnectionRate, p.IMAPFailuresPerMinute = 20, 100000, 1000
			})},
		{"lower bounds", "protection: {limits: {connections_per_client: 1, message_rate: 0}}\n", nil,
			with(func(p *Protection) { p.ConnectionsPerClient, p.MessageRate = 1, 0 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = v
			}
			s, err := Load("quietmx.yaml", []byte(head+tc.yaml), env)
			if err != nil {
				t.Fatal(err)
			}
			got := s.Protection
			if !slices.Equal(got.DNSBL, tc.want.DNSBL) {
				t.Errorf("DNSBL = %q, want %q", got.DNSBL, tc.want.DNSBL)
			}
			got.DNSBL, tc.want.DNSBL = nil, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Protection = %+v\nwant         %+v", got, tc.want)
			}
			if len(s.Warnings) != 0 {
				t.Errorf("warnings: %q", s.Warnings)
			}
		})
	}
}

// TestProtectionBadInput: one row per rule, with the exact message.
func TestProtectionBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		env  map[string]string
		want string
	}{
		{"not a mapping", "protection: yes\n", nil,
			`quietmx.yaml:7:13: protection: want a mapping with keys pregreet, deep_tests, dnsbl, limits, imap, got "yes"`},
		{"unknown key", "protection: {pregret: false}\n", nil,
			`quietmx.yaml:7:14: protection.pregret: unknown key "pregret" (did you mean pregreet?)`},
		{"unknown limit", "protection:\n  limits: {connection_rates: 5}\n", nil,
			`quietmx.yaml:8:12: protection.limits.connection_rates: unknown key "connection_rates" (did you mean connection_rate?)`},
		{"unknown imap key", "protection:\n  imap: {failures: 5}\n", nil,
			`quietmx.yaml:8:10: protection.imap.failures: unknown key "failures" (want failures_per_minute)`},
		{"unknown dnsbl key", "protection:\n  dnsbl: {site: [x.example]}\n", nil,
			`quietmx.yaml:8:11: protection.dnsbl.site: unknown key "site" (did you mean sites?)`},
		{"not a bool", "protection: {pregreet: maybe}\n", nil,
			`quietmx.yaml:7:24: protection.pregreet: want true or false (also yes/no, on/off, unquoted), got "maybe"`},
		{"not a number", "protection:\n  limits: {connection_rate: lots}\n", nil,
			`quietmx.yaml:8:29: protection.limits.connection_rate: want a whole number, got "lots"`},
		{"negative", "protection:\n  limits: {message_rate: -1}\n", nil,
			`quietmx.yaml:8:26: protection.limits.message_rate: -1 is out of range: want 0 (no limit) to 100000`},
		{"too many connections per client", "protection:\n  limits: {connections_per_client: 21}\n", nil,
			`quietmx.yaml:8:36: protection.limits.connections_per_client: 21 is out of range: want 1 to 20 (half of the 40 smtpd processes: one client must not take them all)`},
		{"no connection at all per client", "protection:\n  limits: {connections_per_client: 0}\n", nil,
			`quietmx.yaml:8:36: protection.limits.connections_per_client: 0 is out of range: want 1 to 20 (half of the 40 smtpd processes: one client must not take them all)`},
		{"imap limit too high", "protection:\n  imap: {failures_per_minute: 5000}\n", nil,
			`quietmx.yaml:8:31: protection.imap.failures_per_minute: 5000 is out of range: want 0 (no limit) to 1000`},
		{"threshold 0", "protection:\n  dnsbl: {sites: [zen.spamhaus.org], threshold: 0}\n", nil,
			`quietmx.yaml:8:49: protection.dnsbl.threshold: 0 is out of range: want 1 to 1000 (the total weight of the lists that must name a client)`},
		{"bad site syntax", "protection:\n  dnsbl: {sites: [\"zen.spamhaus.org*two\"]}\n", nil,
			`quietmx.yaml:8:19: protection.dnsbl.sites[0]: "zen.spamhaus.org*two" is not a blocklist site: want name[=filter][*weight], e.g. zen.spamhaus.org*2`},
		{"bad site name", "protection:\n  dnsbl: {sites: [ok.example, \"bad name.example\"]}\n", nil,
			`quietmx.yaml:8:31: protection.dnsbl.sites[1]: "bad name.example" is not a valid blocklist name`},
		{"a filter cannot smuggle settings", "protection:\n  dnsbl: {sites: [\"x.example=127.0.0.2, y\"]}\n", nil,
			`quietmx.yaml:8:19: protection.dnsbl.sites[0]: "x.example=127.0.0.2, y" is not a blocklist site: want name[=filter][*weight], e.g. zen.spamhaus.org*2`},
		{"env not a number", "", map[string]string{"QUIETMX_SMTP_CONNECTION_RATE": "fast"},
			`QUIETMX_SMTP_CONNECTION_RATE: want a whole number, got "fast"`},
		{"env out of range", "", map[string]string{"QUIETMX_IMAP_FAILURES_PER_MINUTE": "-2"},
			`QUIETMX_IMAP_FAILURES_PER_MINUTE: -2 is out of range: want 0 (no limit) to 1000`},
		{"env not a bool", "", map[string]string{"QUIETMX_SMTP_PREGREET": "sometimes"},
			`QUIETMX_SMTP_PREGREET: want true or false, got "sometimes"`},
		{"env bad site", "", map[string]string{"QUIETMX_DNSBL_SITES": "zen.spamhaus.org,bad_site!"},
			`QUIETMX_DNSBL_SITES: "bad_site!" is not a valid blocklist name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = v
			}
			_, err := Load("quietmx.yaml", []byte(head+tc.yaml), env)
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			if got := strings.TrimSpace(err.Error()); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
