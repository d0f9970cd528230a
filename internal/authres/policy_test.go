package authres

import (
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dmarc"
	"quietmx/internal/yamlconf"
)

func TestDispositionApply(t *testing.T) {
	failReject := Verdict{DMARC: Fail, Policy: dmarc.PolicyReject}
	failQuar := Verdict{DMARC: Fail, Policy: dmarc.PolicyQuarantine}
	failNone := Verdict{DMARC: Fail, Policy: dmarc.PolicyNone}
	pass := Verdict{DMARC: Pass, Policy: dmarc.PolicyReject}
	temp := Verdict{DMARC: TempError}
	tests := []struct {
		d    Disposition
		v    Verdict
		want Disposition
	}{
		{Refuse, failReject, Refuse},
		{Junk, failReject, Junk},
		{Deliver, failReject, Deliver},
		{"", failReject, Deliver},
		{Refuse, failQuar, Junk},
		{Junk, failQuar, Junk},
		{Deliver, failQuar, Deliver},
		{Refuse, failNone, Deliver},
		{Refuse, pass, Deliver},
		{Refuse, temp, Deliver},
		{Refuse, Verdict{}, Deliver},
	}
	for _, tc := range tests {
		if got := tc.d.Apply(tc.v); got != tc.want {
			t.Errorf("%q.Apply(%+v) = %q, want %q", tc.d, tc.v, got, tc.want)
		}
		want := tc.want
		if want == Refuse {
			want = Junk // accepted already: never a bounce
		}
		if got := tc.d.AtDelivery(tc.v); got != want {
			t.Errorf("%q.AtDelivery(%+v) = %q, want %q", tc.d, tc.v, got, want)
		}
	}
}

func TestDecision(t *testing.T) {
	refuse := Policy{Methods: Methods{DKIM: true, DMARC: true}, DMARCFail: Refuse}
	junk := Policy{Methods: Methods{DKIM: true, DMARC: true}, DMARCFail: Junk}
	spfOnly := Policy{}
	dkimOnly := Policy{Methods: Methods{DKIM: true}}
	fail := &Verdict{DMARC: Fail, Policy: dmarc.PolicyReject}
	tests := []struct {
		name       string
		policies   []Policy
		v          *Verdict
		methods    Methods
		wantRefuse bool
	}{
		{"one recipient asks to refuse", []Policy{refuse}, fail, Methods{true, true}, true},
		{"every recipient asks", []Policy{refuse, refuse}, fail, Methods{true, true}, true},
		{"one of two only wants junk: deliver, marked", []Policy{refuse, junk}, fail, Methods{true, true}, false},
		{"one of two did not consent to DMARC", []Policy{refuse, spfOnly}, fail, Methods{true, true}, false},
		{"union of methods", []Policy{spfOnly, dkimOnly}, fail, Methods{DKIM: true}, false},
		{"no recipients", nil, fail, Methods{}, false},
		{"before the checks", []Policy{refuse}, nil, Methods{true, true}, false},
		{"DMARC passed", []Policy{refuse}, &Verdict{DMARC: Pass, Policy: dmarc.PolicyReject}, Methods{true, true}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, refuse := Decision(tc.policies, tc.v)
			if m != tc.methods || refuse != tc.wantRefuse {
				t.Fatalf("Decision = %+v, %v; want %+v, %v", m, refuse, tc.methods, tc.wantRefuse)
			}
		})
	}
}

func TestParseMethods(t *testing.T) {
	tests := []struct {
		name, src string
		base      Methods
		want      Methods
		diags     []string // substrings, in order
	}{
		{"absent", "auth:\n", Methods{}, Methods{}, nil},
		{"both on", "auth: {dkim: true, dmarc: yes}\n", Methods{}, Methods{true, true}, nil},
		{"dmarc implies dkim", "auth: {dmarc: on}\n", Methods{}, Methods{true, true}, nil},
		{"dmarc with dkim off warns", "auth: {dkim: false, dmarc: true}\n", Methods{}, Methods{true, true}, []string{"1:14: warning: auth.dkim: dmarc: true needs DKIM"}},
		{"mailbox overrides the appliance", "auth: {dmarc: false}\n", Methods{true, true}, Methods{DKIM: true}, nil},
		{"arc false is fine", "auth: {arc: false}\n", Methods{}, Methods{}, nil},
		{"arc true is refused", "auth: {arc: true}\n", Methods{}, Methods{}, []string{"auth.arc: ARC verification is not available"}},
		{"quoted boolean", "auth: {dkim: \"true\"}\n", Methods{}, Methods{}, []string{`auth.dkim: want true or false`}},
		{"typo", "auth: {dkmi: true}\n", Methods{}, Methods{}, []string{`unknown key "dkmi" (did you mean dkim?)`}},
		{"not a mapping", "auth: yes\n", Methods{}, Methods{}, []string{"auth: want a mapping"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := yamlconf.New("quietmx.yaml")
			root, ok := d.Decode([]byte(tc.src))
			if !ok {
				t.Fatal(d.Diags)
			}
			got, ok := ParseMethods(d, root.Content[1], "auth", tc.base)
			if got != tc.want {
				t.Errorf("methods = %+v, want %+v", got, tc.want)
			}
			checkDiags(t, d.Diags, tc.diags)
			if ok == d.Diags.HasErrors() {
				t.Errorf("ok = %v with diagnostics %v", ok, d.Diags)
			}
		})
	}
}

func TestParseDMARCFail(t *testing.T) {
	src := `dmarc_fail:
  default: deliver
  me@example.com: refuse
  "@example.org": Junk
  Boss: refuse
  typo@example.com: rejcet
  list@example.com: [junk]
`
	d := yamlconf.New("rules.yaml")
	root, ok := d.Decode([]byte(src))
	if !ok {
		t.Fatal(d.Diags)
	}
	got, ok := ParseDMARCFail(d, root.Content[1], "dmarc_fail")
	if ok {
		t.Error("ok with errors")
	}
	want := map[string]Disposition{"default": Deliver, "me@example.com": Refuse, "@example.org": Junk, "boss": Refuse}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	checkDiags(t, d.Diags, []string{
		`rules.yaml:5:3: warning: dmarc_fail."Boss": keys are matched in lowercase`,
		`rules.yaml:6:21: dmarc_fail."typo@example.com": unknown disposition "rejcet" (want deliver, junk or refuse)`,
		`rules.yaml:7:21: dmarc_fail."list@example.com": want deliver, junk or refuse, got a list`,
	})

	d = yamlconf.New("rules.yaml")
	root, _ = d.Decode([]byte("dmarc_fail: refuse\n"))
	if _, ok := ParseDMARCFail(d, root.Content[1], "dmarc_fail"); ok || !strings.Contains(d.Diags.Err().Error(), "want a mapping") {
		t.Errorf("a scalar dmarc_fail: %v", d.Diags)
	}
	d = yamlconf.New("rules.yaml")
	root, _ = d.Decode([]byte("dmarc_fail: {a: refus}\n"))
	ParseDMARCFail(d, root.Content[1], "dmarc_fail")
	checkDiags(t, d.Diags, []string{`unknown disposition "refus" (did you mean refuse?)`})
}

func checkDiags(t *testing.T, got yamlconf.Diagnostics, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("diagnostics %q, want %d like %q", got, len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(got[i].String(), w) {
			t.Errorf("diagnostic %d = %q, want it to contain %q", i, got[i].String(), w)
		}
	}
}
