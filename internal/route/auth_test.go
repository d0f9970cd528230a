package route_test

import (
	"testing"

	"quietmx/internal/authres"
	"quietmx/internal/route"
)

// TestDMARCFail: dmarc_fail: is matched like aliases: (rematch, the lookup
// order, then default).
func TestDMARCFail(t *testing.T) {
	set := mustParse(t, `
extension: "\\+"
rematch:
  "^postmaster@": boss@example.com
default: {type: maildir, value: /m/}
dmarc_fail:
  me: refuse
  boss@example.com: junk
  "@example.net": junk
  exact@example.com=: refuse
  default: deliver
`)
	none := mustParse(t, "default: {type: maildir, value: /m/}\n")
	for _, tc := range []struct {
		rcpt string
		want authres.Disposition
		key  string
	}{
		{"me@example.com", authres.Refuse, "me"},
		{"me+lists@example.org", authres.Refuse, "me"},
		{"boss@example.com", authres.Junk, "boss@example.com"},
		{"postmaster@example.com", authres.Junk, "boss@example.com"},
		{"anyone@example.net", authres.Junk, "@example.net"},
		{"exact@example.com", authres.Refuse, "exact@example.com="},
		{"other@example.com", authres.Deliver, "default"},
	} {
		if got, key := route.DMARCFail(set, tc.rcpt); got != tc.want || key != tc.key {
			t.Errorf("%s: got %s (%q), want %s (%q)", tc.rcpt, got, key, tc.want, tc.key)
		}
		if got, key := route.DMARCFail(none, tc.rcpt); got != authres.Deliver || key != "" {
			t.Errorf("no dmarc_fail, %s: got %s (%q)", tc.rcpt, got, key)
		}
	}
}
