package explain_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"quietmx/internal/authres"
	"quietmx/internal/delivery"
	"quietmx/internal/explain"
	"quietmx/internal/rules"
)

// explain --auth shows what delivery does with the verdict: the same
// disposition, and the Junk folder exactly where delivery puts the message.
func TestExplainAuthAgreesWithDelivery(t *testing.T) {
	dir := t.TempDir()
	src := strings.ReplaceAll(`
aliases:
  me: {type: maildir, value: DIR/me}
  you: {type: maildir, value: DIR/you}
default: {type: maildir, value: DIR/def}
dmarc_fail:
  me: refuse
  you: junk
`, "DIR", dir)
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	set, fs := rules.Parse(path, []byte(src))
	if fs.HasErrors() {
		t.Fatal(fs)
	}
	for _, tc := range []struct {
		verdict, field string
		addr           string
		smtp, deliver  authres.Disposition
	}{
		{"dmarc=fail", "dmarc=fail policy.dmarc=reject", "me@x.example", authres.Refuse, authres.Junk},
		{"dmarc=fail", "dmarc=fail policy.dmarc=reject", "you@x.example", authres.Junk, authres.Junk},
		{"dmarc=fail", "dmarc=fail policy.dmarc=reject", "other@x.example", authres.Deliver, authres.Deliver},
		{"dmarc=fail policy.dmarc=quarantine", "dmarc=fail policy.dmarc=quarantine", "me@x.example", authres.Junk, authres.Junk},
		{"dmarc=pass", "dmarc=pass", "me@x.example", authres.Deliver, authres.Deliver},
	} {
		v, err := authres.ParseVerdict(tc.verdict)
		if err != nil {
			t.Fatal(err)
		}
		r := explain.ExplainAuth(set, "", []string{tc.addr}, "", "", &v)[0]
		if r.Auth.AtSMTP != tc.smtp || r.Auth.AtDelivery != tc.deliver {
			t.Errorf("%s %s: at SMTP %s, at delivery %s; want %s, %s", tc.verdict, tc.addr, r.Auth.AtSMTP, r.Auth.AtDelivery, tc.smtp, tc.deliver)
		}
		explainedJunk := strings.HasSuffix(r.Actions[0].Summary, "(junk)")
		msg := "Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=a@x.example; " + tc.field + " header.from=x.example\nFrom: a@x.example\n\nhi\n"
		res := delivery.Run(context.Background(), delivery.Config{RulesPath: path, Hostname: "mx.example.com"}, delivery.Request{Recipients: []string{tc.addr}, Message: []byte(msg)})
		if res.Outcome != delivery.Delivered {
			t.Fatalf("delivery: %v %v", res.Outcome, res.Err)
		}
		file := res.Records[0].Actions[0].File
		if delivered := strings.Contains(file, "/.Junk/"); delivered != explainedJunk {
			t.Errorf("%s %s: explain says junk=%v, delivery wrote %s", tc.verdict, tc.addr, explainedJunk, file)
		}
		var b bytes.Buffer
		if err := explain.Text(&b, []explain.Report{r}); err != nil || !strings.Contains(b.String(), "dmarc_fail:") {
			t.Errorf("text: %v\n%s", err, b.String())
		}
	}
}
