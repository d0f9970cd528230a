package authres

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
)

const host = "mx.quietmx.test"

// keys are generated once per test binary; the RSA key is the kind most
// senders use, ed25519 the cheap one.
var keys = sync.OnceValue(func() struct {
	ed  ed25519.PrivateKey
	rsa *rsa.PrivateKey
} {
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return struct {
		ed  ed25519.PrivateKey
		rsa *rsa.PrivateKey
	}{ed, rk}
})

// zone is the test DNS: example.test signs with selectors ed and rsa,
// allows 192.0.2.1 by SPF and publishes p=reject (sp=quarantine);
// relaxed.test and strict.test differ only in alignment.
func zone() *StaticResolver {
	k := keys()
	rsaPub, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		panic(err)
	}
	edRec := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k.ed.Public().(ed25519.PublicKey))
	rsaRec := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaPub)
	return &StaticResolver{
		TXT: map[string][]string{
			"example.test":                       {"v=spf1 ip4:192.0.2.1 -all"},
			"_dmarc.example.test":                {"v=DMARC1; p=reject; sp=quarantine"},
			"ed._domainkey.example.test":         {edRec},
			"rsa._domainkey.example.test":        {rsaRec},
			"ed._domainkey.mail.example.test":    {edRec},
			"ed._domainkey.other.test":           {edRec},
			"soft.test":                          {"v=spf1 ip4:192.0.2.1 ~all"},
			"neutral.test":                       {"v=spf1 ?all"},
			"broken.test":                        {"v=spf1 foo:bar -all"},
			"helo.test":                          {"v=spf1 ip4:192.0.2.1 -all"},
			"other.test":                         {"v=spf1 ip4:192.0.2.99 -all"},
			"strict.test":                        {"v=spf1 ip4:192.0.2.1 -all"},
			"_dmarc.strict.test":                 {"v=DMARC1; p=reject; adkim=s; aspf=s"},
			"ed._domainkey.mail.strict.test":     {edRec},
			"_dmarc.none.test":                   {"v=DMARC1; p=none"},
			"_dmarc.quarantine.test":             {"v=DMARC1; p=quarantine"},
			"_dmarc.bad.test":                    {"v=DMARC1; p=whatever"},
			"ed._domainkey.nokey.example.test":   {"v=DKIM1; k=ed25519; p="},
			"ed._domainkey.garbage.example.test": {"v=DKIM1; k=ed25519; p=!!!"},
		},
	}
}

func message(from string) string {
	return "From: " + from + "\r\n" +
		"To: me@quietmx.test\r\n" +
		"Subject: hello\r\n" +
		"Date: Mon, 30 Nov 2026 06:00:00 +0000\r\n" +
		"Message-ID: <1@example.test>\r\n" +
		"\r\n" +
		"Hello there.\r\n"
}

// sign returns msg with a DKIM-Signature by domain d and selector sel
// ("ed" or "rsa" keys).
func sign(t testing.TB, msg, d, sel string) string {
	t.Helper()
	var signer crypto.Signer = keys().ed
	if sel == "rsa" {
		signer = keys().rsa
	}
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{
		Domain: d, Selector: sel, Signer: signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

var all = Methods{DKIM: true, DMARC: true}

func TestSPF(t *testing.T) {
	tests := []struct {
		name, ip, helo, from string
		down                 bool
		want                 Value
	}{
		{"pass", "192.0.2.1", "mta.example.test", "a@example.test", false, Pass},
		{"fail", "198.51.100.7", "mta.example.test", "a@example.test", false, Fail},
		{"softfail", "198.51.100.7", "x", "a@soft.test", false, SoftFail},
		{"neutral", "198.51.100.7", "x", "a@neutral.test", false, Neutral},
		{"none: no record", "192.0.2.1", "x", "a@unknown.test", false, None},
		{"permerror: broken record", "192.0.2.1", "x", "a@broken.test", false, PermError},
		{"temperror: DNS down", "192.0.2.1", "x", "a@example.test", true, TempError},
		{"null sender: the HELO name is judged", "192.0.2.1", "helo.test", "", false, Pass},
		{"null sender, HELO not allowed", "198.51.100.7", "helo.test", "", false, Fail},
		{"IPv6 client not listed", "2001:db8::1", "x", "a@example.test", false, Fail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			z := zone()
			z.Down = tc.down
			env := Envelope{ClientIP: net.ParseIP(tc.ip), Helo: tc.helo, MailFrom: tc.from}
			rep := Checker{Resolver: z}.Check(context.Background(), env, []byte(message("a@example.test")), Methods{})
			if rep.Verdict.SPF != tc.want {
				t.Fatalf("spf = %q, want %q (header %s)", rep.Verdict.SPF, tc.want, rep.Header(host))
			}
			if rep.Verdict.DKIM != "" || rep.Verdict.DMARC != "" {
				t.Errorf("methods the owner did not turn on ran: %+v", rep.Verdict)
			}
			h := rep.Header(host)
			if strings.Contains(h, "dkim") || strings.Contains(h, "dmarc") {
				t.Errorf("header lists methods that did not run: %s", h)
			}
			if !strings.HasPrefix(h, host+"; spf="+string(tc.want)) {
				t.Errorf("header = %q", h)
			}
		})
	}
}

func TestSPFWithoutClientIP(t *testing.T) {
	rep := Checker{Resolver: zone()}.Check(context.Background(), Envelope{MailFrom: "a@example.test"}, nil, Methods{})
	if rep.Verdict.SPF != None {
		t.Fatalf("spf = %q, want none for a message that did not come over SMTP", rep.Verdict.SPF)
	}
}

func TestDKIMAndDMARC(t *testing.T) {
	good := Envelope{ClientIP: net.ParseIP("192.0.2.1"), Helo: "mta.example.test", MailFrom: "bounce@example.test"}
	// A forwarder: SPF judges another domain, so only DKIM can align.
	forwarded := Envelope{ClientIP: net.ParseIP("192.0.2.99"), Helo: "fwd.other.test", MailFrom: "fwd@other.test"}
	spoof := Envelope{ClientIP: net.ParseIP("198.51.100.7"), Helo: "evil.test", MailFrom: "x@evil.test"}
	tampered := strings.Replace(sign(t, message("a@example.test"), "example.test", "ed"), "Hello there.", "Send money.", 1)
	tests := []struct {
		name   string
		env    Envelope
		msg    string
		down   bool
		dkim   Value
		dmarc  Value
		policy dmarc.Policy
	}{
		{"signed ed25519, aligned", forwarded, sign(t, message("a@example.test"), "example.test", "ed"), false, Pass, Pass, dmarc.PolicyReject},
		{"signed rsa, aligned", forwarded, sign(t, message("a@example.test"), "example.test", "rsa"), false, Pass, Pass, dmarc.PolicyReject},
		{"unsigned, SPF aligned", good, message("a@example.test"), false, None, Pass, dmarc.PolicyReject},
		{"unsigned spoof", spoof, message("ceo@example.test"), false, None, Fail, dmarc.PolicyReject},
		{"body changed after signing", forwarded, tampered, false, Fail, Fail, dmarc.PolicyReject},
		{"signed by another domain", spoof, sign(t, message("a@example.test"), "other.test", "ed"), false, Pass, Fail, dmarc.PolicyReject},
		{"relaxed alignment of a subdomain signature", forwarded, sign(t, message("a@example.test"), "mail.example.test", "ed"), false, Pass, Pass, dmarc.PolicyReject},
		{"strict alignment refuses a subdomain signature", forwarded, sign(t, message("a@strict.test"), "mail.strict.test", "ed"), false, Pass, Fail, dmarc.PolicyReject},
		{"subdomain From uses the org record's sp=", spoof, message("a@news.example.test"), false, None, Fail, dmarc.PolicyQuarantine},
		{"no DMARC record", spoof, message("a@unknown.test"), false, None, None, ""},
		{"p=none", spoof, message("a@none.test"), false, None, Fail, dmarc.PolicyNone},
		{"p=quarantine", spoof, message("a@quarantine.test"), false, None, Fail, dmarc.PolicyQuarantine},
		{"broken DMARC record", spoof, message("a@bad.test"), false, None, PermError, ""},
		{"key not published", forwarded, sign(t, message("a@example.test"), "example.test", "none"), false, PermError, Fail, dmarc.PolicyReject},
		{"empty key (revoked)", forwarded, sign(t, message("a@example.test"), "nokey.example.test", "ed"), false, PermError, Fail, dmarc.PolicyReject},
		{"DNS down", good, sign(t, message("a@example.test"), "example.test", "ed"), true, TempError, TempError, ""},
		{"two From fields", spoof, "From: a@example.test\r\n" + message("b@example.test"), false, None, PermError, ""},
		{"From with two domains", spoof, message("a@example.test, b@other.test"), false, None, PermError, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			z := zone()
			z.Down = tc.down
			rep := Checker{Resolver: z}.Check(context.Background(), tc.env, []byte(tc.msg), all)
			v := rep.Verdict
			if v.DKIM != tc.dkim || v.DMARC != tc.dmarc || v.Policy != tc.policy {
				t.Fatalf("dkim=%s dmarc=%s policy=%q, want dkim=%s dmarc=%s policy=%q\n%s", v.DKIM, v.DMARC, v.Policy, tc.dkim, tc.dmarc, tc.policy, rep.Header(host))
			}
			// What is written is what delivery reads back.
			if got := FieldVerdict(rep.Header(host)); got != v {
				t.Errorf("header reads back as %+v, want %+v\n%s", got, v, rep.Header(host))
			}
		})
	}
}

func TestDKIMOnlyListsNoDMARC(t *testing.T) {
	msg := sign(t, message("a@example.test"), "example.test", "ed")
	env := Envelope{ClientIP: net.ParseIP("192.0.2.1"), Helo: "x", MailFrom: "a@example.test"}
	h := Checker{Resolver: zone()}.Check(context.Background(), env, []byte(msg), Methods{DKIM: true}).Header(host)
	want := host + "; spf=pass smtp.mailfrom=a@example.test; dkim=pass header.d=example.test header.i=@example.test"
	if h != want {
		t.Fatalf("header\n got %s\nwant %s", h, want)
	}
}

func TestDMARCHeader(t *testing.T) {
	env := Envelope{ClientIP: net.ParseIP("198.51.100.7"), Helo: "evil.test", MailFrom: "x@evil.test"}
	h := Checker{Resolver: zone()}.Check(context.Background(), env, []byte(message("ceo@example.test")), all).Header(host)
	want := host + "; spf=none smtp.mailfrom=x@evil.test; dkim=none; dmarc=fail header.from=example.test policy.dmarc=reject"
	if h != want {
		t.Fatalf("header\n got %s\nwant %s", h, want)
	}
}

func TestOurs(t *testing.T) {
	tests := []struct {
		value string
		want  bool
	}{
		{host + "; spf=pass", true},
		{"MX.QuietMX.Test; dkim=pass", true},
		{host + ".; dkim=pass", true},
		{"(forged) " + host + "; dkim=pass", true},
		{"(nested (comment)) " + host + " (x); dkim=pass", true},
		{`"` + host + `"; dkim=pass`, true},
		{host + " 1; dkim=pass", true},
		{"\r\n\t" + host + ";\r\n\tdkim=pass", true},
		{host, true},
		{") " + host + "; dkim=pass", true}, // a stray ")" once hung the reader
		{"other.test; spf=pass", false},
		{host + ".evil; dkim=pass", false},
		{"x " + host + "; dkim=pass", false},
		{"; " + host, false},
		{"", false},
		{"(" + host + ")", false},
	}
	for _, tc := range tests {
		if got := Ours(tc.value, host); got != tc.want {
			t.Errorf("Ours(%q) = %v, want %v", tc.value, got, tc.want)
		}
	}
}

func TestReadVerdict(t *testing.T) {
	msg := "Authentication-Results: other.test; dmarc=pass header.from=example.test\r\n" +
		"Authentication-Results: " + host + "; spf=fail smtp.mailfrom=x@evil.test;\r\n" +
		"\tdkim=none; dmarc=fail (the domain asks to reject) header.from=example.test policy.dmarc=reject\r\n" +
		"Authentication-Results: " + host + "; dmarc=pass\r\n" +
		message("ceo@example.test")
	v, ok := ReadVerdict([]byte(msg), host)
	want := Verdict{SPF: Fail, DKIM: None, DMARC: Fail, Policy: dmarc.PolicyReject, From: "example.test"}
	if !ok || v != want {
		t.Fatalf("ReadVerdict = %+v, %v; want %+v (the topmost field of ours)", v, ok, want)
	}
	if _, ok := ReadVerdict([]byte(message("a@example.test")), host); ok {
		t.Fatal("a message without our field has a verdict")
	}
	if _, ok := ReadVerdict([]byte("not a message"), host); ok {
		t.Fatal("garbage has a verdict")
	}
}

func TestParseVerdict(t *testing.T) {
	tests := []struct {
		in      string
		want    Verdict
		wantErr string
	}{
		{"dmarc=fail", Verdict{DMARC: Fail, Policy: dmarc.PolicyReject}, ""},
		{"dmarc=fail policy.dmarc=quarantine", Verdict{DMARC: Fail, Policy: dmarc.PolicyQuarantine}, ""},
		{"spf=pass, dkim=pass,dmarc=pass", Verdict{SPF: Pass, DKIM: Pass, DMARC: Pass}, ""},
		{"DMARC=FAIL", Verdict{DMARC: Fail, Policy: dmarc.PolicyReject}, ""},
		{"", Verdict{}, "no result"},
		{"dmarc", Verdict{}, "no result"},
		{"dmarc=maybe", Verdict{}, "unknown result"},
		{"dmarc=fail policy.dmarc=drop", Verdict{}, "unknown policy"},
	}
	for _, tc := range tests {
		got, err := ParseVerdict(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseVerdict(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseVerdict(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseField(f *testing.F) {
	for _, s := range []string{
		host + "; spf=pass smtp.mailfrom=a@b",
		`(c) "x"; dkim=fail reason="a;b" header.d=x`,
		"x 1; none",
		"((((", `"\`, "a;=;==;b=c d=", host + "; dmarc=fail policy.dmarc=reject header.from=example.test",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, methods := ParseField(s)
		for _, m := range methods {
			if m.Name == "" || m.Result == "" {
				t.Fatalf("empty method or result from %q: %+v", s, m)
			}
		}
		if Ours(s, host) && id != host && id != host+"." {
			t.Fatalf("Ours(%q) with id %q", s, id)
		}
		_ = FieldVerdict(s)
		_, _ = ParseVerdict(s)
	})
}

// recording is a StaticResolver that remembers the names asked.
type recording struct {
	StaticResolver
	names []string
}

func (r *recording) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r.names = append(r.names, name)
	return r.StaticResolver.LookupTXT(ctx, name)
}

// Every name is asked fully qualified: a resolver must not try the
// system's search domains after "no such name" (an e2e run found
// "no DMARC record" turned into permerror by a refused search-domain name).
func TestNamesAreAbsolute(t *testing.T) {
	r := &recording{StaticResolver: StaticResolver{TXT: map[string][]string{"example.test": {"v=spf1 -all"}}}}
	Checker{Resolver: r}.Check(context.Background(), Envelope{ClientIP: net.ParseIP("192.0.2.9"), MailFrom: "a@example.test"},
		[]byte("From: a@example.test\r\n\r\nhi\r\n"), Methods{DKIM: true, DMARC: true})
	if len(r.names) == 0 {
		t.Fatal("no TXT lookup")
	}
	for _, n := range r.names {
		if !strings.HasSuffix(n, ".") {
			t.Errorf("asked %q, not fully qualified", n)
		}
	}
}
