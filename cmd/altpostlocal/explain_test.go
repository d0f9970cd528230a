package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// explain --auth: what dmarc_fail: does with a verdict; a verdict it
// cannot read is a usage error (exit 2), not a silent "deliver".
func TestExplainAuth(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	src := "default: {type: maildir, value: " + dir + "/m}\ndmarc_fail: {me: junk}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		auth string
		code int
		want string
	}{
		{"dmarc=fail", 0, "→ delivered into Junk"},
		{"dmarc=fail policy.dmarc=none", 0, "→ delivered as usual"},
		{"dmarc=maybe", 2, "--auth: dmarc=maybe: unknown result"},
		{"nonsense", 2, "--auth: no result"},
	} {
		var out, errb bytes.Buffer
		code := cmdExplain([]string{"-c", path, "--auth", tc.auth, "me@example.com"}, &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("--auth %q: exit %d, want %d with %q:\n%s%s", tc.auth, code, tc.code, tc.want, out.String(), errb.String())
		}
	}
}
