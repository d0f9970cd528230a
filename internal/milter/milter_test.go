package milter

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"quietmx/internal/maillog/maillogtest"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/emersion/go-msgauth/dkim"

	"quietmx/internal/authres"
)

const host = "mx.quietmx.test"

var edKey = sync.OnceValue(func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// zone: example.test allows 192.0.2.1, signs with selector ed, and asks
// receivers to reject failing mail.
func zone() *authres.StaticResolver {
	return &authres.StaticResolver{TXT: map[string][]string{
		"example.test":               {"v=spf1 ip4:192.0.2.1 -all"},
		"_dmarc.example.test":        {"v=DMARC1; p=reject"},
		"ed._domainkey.example.test": {"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edKey().Public().(ed25519.PublicKey))},
	}}
}

const plain = "From: Alice <alice@example.test>\r\n" +
	"To: me@quietmx.test\r\n" +
	"Subject:  two spaces and\r\n\ta folded line\r\n" +
	"Date: Mon, 30 Nov 2026 06:00:00 +0000\r\n" +
	"\r\n" +
	"Hello.\r\n"

// signed is plain with a simple/simple signature, the canonicalization
// that notices every changed byte of the header: a pass proves the filter
// rebuilt the header exactly as sent.
func signed(t testing.TB, msg string) string {
	t.Helper()
	var out bytes.Buffer
	if err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: "example.test", Selector: "ed", Signer: edKey()}); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// harness runs Serve on a unix socket for one test and collects the log.
type harness struct {
	t    testing.TB
	addr string
	logs *maillogtest.Buffer
}

func start(t testing.TB, cfg Config) *harness {
	t.Helper()
	if cfg.Hostname == "" {
		cfg.Hostname = host
	}
	if cfg.Checker.Resolver == nil {
		cfg.Checker.Resolver = zone()
	}
	addr := filepath.Join(t.TempDir(), "milter.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	logs := &maillogtest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, cfg, slog.New(slog.NewTextHandler(logs, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &harness{t: t, addr: addr, logs: logs}
}

// field is one raw header field: the value is everything after the colon.
type field struct{ name, value string }

func splitMessage(t testing.TB, msg string) ([]field, string) {
	t.Helper()
	head, body, ok := strings.Cut(msg, "\r\n\r\n")
	if !ok {
		t.Fatalf("no end of header in %q", msg)
	}
	var fields []field
	for _, line := range strings.Split(head, "\r\n") {
		if line[0] == ' ' || line[0] == '\t' {
			fields[len(fields)-1].value += "\r\n" + line
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		fields = append(fields, field{name, value})
	}
	return fields, body
}

func joinMessage(fields []field, body string) string {
	var b strings.Builder
	for _, f := range fields {
		b.WriteString(f.name + ":" + f.value + "\r\n")
	}
	return b.String() + "\r\n" + body
}

// transaction is one SMTP transaction as Postfix hands it to the filter.
type transaction struct {
	ip, helo, from string
	rcpts          []string
	msg            string
}

func good(msg string, rcpts ...string) transaction {
	return transaction{ip: "192.0.2.1", helo: "mta.example.test", from: "bounce@example.test", rcpts: rcpts, msg: msg}
}

func spoofed(msg string, rcpts ...string) transaction {
	return transaction{ip: "198.51.100.7", helo: "evil.test", from: "x@evil.test", rcpts: rcpts, msg: msg}
}

// send runs the transactions over one milter connection and returns, for
// each, the final action and the message as Postfix would deliver it.
func (h *harness) send(opts []gomilter.Option, txs ...transaction) (acts []*gomilter.Action, out []string) {
	h.t.Helper()
	c := gomilter.NewClient("unix", h.addr, opts...)
	s, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		h.t.Fatal(err)
	}
	defer s.Close()
	must := func(a *gomilter.Action, err error) {
		h.t.Helper()
		if err != nil {
			h.t.Fatal(err)
		}
		if a.Type != gomilter.ActionContinue {
			h.t.Fatalf("early answer %v", a)
		}
	}
	must(s.Conn("client.test", gomilter.FamilyInet, 40000, txs[0].ip))
	must(s.Helo(txs[0].helo))
	for _, tx := range txs {
		must(s.Mail("<"+tx.from+">", ""))
		for _, r := range tx.rcpts {
			must(s.Rcpt("<"+r+">", ""))
		}
		must(s.DataStart())
		fields, body := splitMessage(h.t, tx.msg)
		for _, f := range fields {
			v := f.value
			if !s.ProtocolOption(gomilter.OptHeaderLeadingSpace) {
				v = strings.TrimPrefix(v, " ") // what Sendmail does
			}
			must(s.HeaderField(f.name, v, nil))
		}
		must(s.HeaderEnd())
		mods, act, err := s.BodyReadFrom(strings.NewReader(body))
		if err != nil {
			h.t.Fatal(err)
		}
		acts = append(acts, act)
		lead := s.ProtocolOption(gomilter.OptHeaderLeadingSpace)
		out = append(out, apply(h.t, fields, body, mods, true, lead))
		if other := apply(h.t, fields, body, mods, false, lead); other != out[len(out)-1] {
			h.t.Errorf("Postfix and Sendmail would deliver different messages:\n%s\n----\n%s", out[len(out)-1], other)
		}
	}
	return acts, out
}

// apply carries out the header changes as Postfix does (a deleted field
// leaves the numbering) or as Sendmail does (it is only marked). Without
// the leading-space option the MTA writes "Name: value" itself.
func apply(t testing.TB, fields []field, body string, mods []gomilter.ModifyAction, postfix, leadingSpace bool) string {
	t.Helper()
	type slot struct {
		field
		deleted bool
	}
	var list []slot
	for _, f := range fields {
		list = append(list, slot{field: f})
	}
	for _, m := range mods {
		switch m.Type {
		case gomilter.ActionChangeHeader:
			n := 0
			for i := range list {
				if !strings.EqualFold(list[i].name, m.HeaderName) || (postfix && list[i].deleted) {
					continue
				}
				if n++; n == int(m.HeaderIndex) {
					if m.HeaderValue != "" {
						t.Fatalf("a field was changed, not deleted: %v", m)
					}
					list[i].deleted = true
					break
				}
			}
			if n < int(m.HeaderIndex) {
				t.Fatalf("ChangeHeader past the last field: %v", m)
			}
		case gomilter.ActionInsertHeader:
			if m.HeaderIndex != 0 {
				t.Fatalf("want our field at the top, got %v", m)
			}
			v := strings.ReplaceAll(m.HeaderValue, "\n", "\r\n")
			if !leadingSpace {
				v = " " + v
			}
			list = append([]slot{{field: field{m.HeaderName, v}}}, list...)
		default:
			t.Fatalf("unexpected modification %v", m)
		}
	}
	var kept []field
	for _, s := range list {
		if !s.deleted {
			kept = append(kept, s.field)
		}
	}
	return joinMessage(kept, body)
}

// ours returns the values of the fields that carry our host name.
func ours(msg string) []string {
	var out []string
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	for _, f := range strings.Split(strings.ReplaceAll(head, "\r\n\t", " "), "\r\n") {
		if name, v, _ := strings.Cut(f, ":"); strings.EqualFold(name, authres.Header) && authres.Ours(v, host) {
			out = append(out, v)
		}
	}
	return out
}

func policy(p authres.Policy) func(string) authres.Policy {
	return func(string) authres.Policy { return p }
}

var refuseAll = authres.Policy{Methods: authres.Methods{DKIM: true, DMARC: true}, DMARCFail: authres.Refuse}

func TestForgedFieldsRemovedOursWrittenOnce(t *testing.T) {
	h := start(t, Config{Policy: policy(authres.Policy{Methods: authres.Methods{DMARC: true, DKIM: true}})})
	forged := "Authentication-Results: " + host + "; dkim=pass header.d=example.test\r\n" +
		"Authentication-Results: other.test; spf=pass\r\n" +
		"authentication-results: (sneaky) MX.QUIETMX.TEST; dmarc=pass\r\n" +
		"Authentication-Results: other.test;\r\n\tdkim=fail\r\n" +
		"Authentication-Results: \"" + host + "\" 1; spf=pass\r\n"
	acts, out := h.send(nil, good(forged+signed(t, plain), "me@quietmx.test"))
	if acts[0].Type != gomilter.ActionAccept {
		t.Fatalf("action %v", acts[0])
	}
	got := ours(out[0])
	if len(got) != 1 {
		t.Fatalf("%d fields of ours, want 1:\n%s", len(got), out[0])
	}
	if !strings.HasPrefix(out[0], "Authentication-Results: "+host+";") {
		t.Errorf("ours is not at the top:\n%s", out[0])
	}
	if strings.Count(out[0], "other.test") != 2 {
		t.Errorf("another host's fields were touched:\n%s", out[0])
	}
	v, ok := authres.ReadVerdict([]byte(out[0]), host)
	if want := (authres.Verdict{SPF: authres.Pass, DKIM: authres.Pass, DMARC: authres.Pass, Policy: "reject", From: "example.test"}); !ok || v != want {
		t.Errorf("verdict %+v, want %+v\n%s", v, want, out[0])
	}
}

func TestLeadingSpaceNotOffered(t *testing.T) {
	// Without the option the MTA eats the space after the colon; the
	// filter must put it back or the simple-canonicalized signature fails.
	h := start(t, Config{Policy: policy(authres.Policy{Methods: authres.Methods{DKIM: true}})})
	for _, opts := range [][]gomilter.Option{
		{gomilter.WithoutProtocol(gomilter.OptHeaderLeadingSpace)},
		{gomilter.WithMaximumVersion(4), gomilter.WithProtocols(0)}, // no "no reply" options either: the filter must answer every step
	} {
		acts, out := h.send(opts, good(signed(t, plain), "me@quietmx.test"))
		if acts[0].Type != gomilter.ActionAccept {
			t.Fatalf("action %v", acts[0])
		}
		if v, _ := authres.ReadVerdict([]byte(out[0]), host); v.DKIM != authres.Pass {
			t.Errorf("dkim = %q, want pass (header rebuilt wrongly?)\n%s", v.DKIM, out[0])
		}
		if !strings.HasPrefix(out[0], "Authentication-Results: "+host+";") {
			t.Errorf("the space after the colon is missing or doubled:\n%q", out[0][:60])
		}
	}
}

func TestSPFOnlyByDefault(t *testing.T) {
	h := start(t, Config{})
	_, out := h.send(nil, spoofed(signed(t, plain), "me@quietmx.test"))
	got := ours(out[0])
	if len(got) != 1 || strings.Contains(got[0], "dkim") || strings.Contains(got[0], "dmarc") {
		t.Fatalf("without the owner's consent only SPF may run, got %q", got)
	}
	if !strings.Contains(got[0], "spf=none") {
		t.Errorf("spf: %q", got)
	}
}

func TestRefuse(t *testing.T) {
	junk := authres.Policy{Methods: authres.Methods{DKIM: true, DMARC: true}, DMARCFail: authres.Junk}
	byRcpt := func(r string) authres.Policy {
		if strings.HasPrefix(r, "refuse") {
			return refuseAll
		}
		return junk
	}
	h := start(t, Config{Policy: byRcpt})
	tests := []struct {
		name   string
		tx     transaction
		refuse bool
	}{
		{"spoofed, the recipient asked to refuse", spoofed(plain, "refuse@quietmx.test"), true},
		{"spoofed, every recipient asked", spoofed(plain, "refuse@quietmx.test", "refuse2@quietmx.test"), true},
		{"spoofed, one recipient wants it in Junk", spoofed(plain, "refuse@quietmx.test", "junk@quietmx.test"), false},
		{"authentic", good(signed(t, plain), "refuse@quietmx.test"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acts, out := h.send(nil, tc.tx)
			if tc.refuse {
				if acts[0].Type != gomilter.ActionRejectWithCode || acts[0].SMTPCode != 550 || !strings.Contains(acts[0].SMTPReply, "5.7.1") {
					t.Fatalf("action %v, want 550 5.7.1", acts[0])
				}
				if out[0] != tc.tx.msg {
					t.Errorf("a refused message was changed")
				}
				return
			}
			if acts[0].Type != gomilter.ActionAccept || len(ours(out[0])) != 1 {
				t.Fatalf("action %v, fields %q", acts[0], ours(out[0]))
			}
		})
	}
	if !strings.Contains(h.logs.String(), "refused") {
		t.Errorf("the refusal is not logged:\n%s", h.logs)
	}
}

func TestDNSDownDelivers(t *testing.T) {
	z := zone()
	z.Down = true
	h := start(t, Config{Checker: authres.Checker{Resolver: z}, Policy: policy(refuseAll)})
	acts, out := h.send(nil, spoofed(plain, "me@quietmx.test"))
	if acts[0].Type != gomilter.ActionAccept {
		t.Fatalf("action %v: a DNS failure must never delay or refuse", acts[0])
	}
	v, _ := authres.ReadVerdict([]byte(out[0]), host)
	if v.SPF != authres.TempError || v.DKIM != authres.None || v.DMARC != authres.TempError {
		t.Errorf("verdict %+v\n%s", v, out[0])
	}
}

// panicky is a resolver that panics: our own bug, in the middle of a check.
type panicky struct{ authres.StaticResolver }

func (panicky) LookupTXT(context.Context, string) ([]string, error) { panic("boom") }

func TestPanicAcceptsUnchanged(t *testing.T) {
	h := start(t, Config{Checker: authres.Checker{Resolver: &panicky{}}, Policy: policy(refuseAll)})
	msg := "Authentication-Results: " + host + "; dkim=pass\r\n" + plain
	acts, out := h.send(nil, spoofed(msg, "me@quietmx.test"), good(plain, "me@quietmx.test"))
	for i, a := range acts {
		if a.Type != gomilter.ActionAccept {
			t.Fatalf("message %d: action %v, want accept", i, a)
		}
	}
	if out[0] != msg {
		t.Errorf("a message was changed after a panic:\n%s", out[0])
	}
	if !strings.Contains(h.logs.String(), "panic") || !strings.Contains(h.logs.String(), "boom") {
		t.Errorf("the panic is not logged:\n%s", h.logs)
	}
}

// TestPanicInAnEarlyStep: the owner's policy is looked up at RCPT TO; a
// panic there is remembered and the message goes through unchanged.
func TestPanicInAnEarlyStep(t *testing.T) {
	calls := 0
	pol := func(string) authres.Policy {
		calls++
		panic("policy broke")
	}
	h := start(t, Config{Policy: pol})
	acts, out := h.send(nil, spoofed(plain, "me@quietmx.test"))
	if acts[0].Type != gomilter.ActionAccept || out[0] != plain || calls != 1 {
		t.Fatalf("action %v, calls %d, changed %v", acts[0], calls, out[0] != plain)
	}
}

func TestSeveralMessagesOneConnection(t *testing.T) {
	h := start(t, Config{Policy: policy(refuseAll)})
	forged := "Authentication-Results: " + host + "; dmarc=pass\r\n"
	acts, out := h.send(nil,
		good(forged+forged+signed(t, plain), "me@quietmx.test"),
		spoofed(plain, "me@quietmx.test"),
		good(signed(t, plain), "me@quietmx.test"))
	wantTypes := []gomilter.ActionType{gomilter.ActionAccept, gomilter.ActionRejectWithCode, gomilter.ActionAccept}
	for i := range acts {
		if acts[i].Type != wantTypes[i] {
			t.Errorf("message %d: %v", i, acts[i])
		}
	}
	for _, i := range []int{0, 2} {
		if got := ours(out[i]); len(got) != 1 || !strings.Contains(got[0], "dmarc=pass") {
			t.Errorf("message %d: %q", i, got)
		}
	}
}

func TestTooBigGetsSPFOnly(t *testing.T) {
	h := start(t, Config{Policy: policy(refuseAll), MaxMessageBytes: 100})
	acts, out := h.send(nil, spoofed(plain+strings.Repeat("x", 200)+"\r\n", "me@quietmx.test"))
	if acts[0].Type != gomilter.ActionAccept {
		t.Fatalf("action %v", acts[0])
	}
	if got := ours(out[0]); len(got) != 1 || strings.Contains(got[0], "dkim") {
		t.Errorf("%q", got)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, Config{Hostname: host}, nil) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if err := Serve(context.Background(), ln, Config{}, nil); err == nil || !strings.Contains(err.Error(), "host name") {
		t.Errorf("no host name: %v", err)
	}
}

func TestListenAndServeAddress(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sock := filepath.Join(t.TempDir(), "m.sock")
	if err := ListenAndServe(ctx, "unix:"+sock, Config{Hostname: host}, nil); err != nil {
		t.Fatal(err)
	}
	err := ListenAndServe(ctx, "inet:256.0.0.1:1", Config{Hostname: host}, nil)
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("bad address: %v", err)
	}
}

// BenchmarkMessage is one message through the filter over a unix socket,
// DNS answered in-process: the extra time a message spends at the end of
// DATA. Sub-benchmarks: SPF only (the default), and every check on for a
// message signed with ed25519 and with RSA-2048 (most senders).
func BenchmarkMessage(b *testing.B) {
	body := strings.Repeat("A line of an ordinary message body, about seventy characters long.\r\n", 60)
	all := policy(authres.Policy{Methods: authres.Methods{DKIM: true, DMARC: true}})
	for _, bc := range []struct {
		name   string
		policy func(string) authres.Policy
		signer crypto.Signer
		want   string
	}{
		{"spf-only", nil, edKey(), "spf=pass"},
		{"all-ed25519", all, edKey(), "dmarc=pass"},
		{"all-rsa2048", all, rsaKey(), "dmarc=pass"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			z := zone()
			pub, _ := x509.MarshalPKIXPublicKey(&rsaKey().PublicKey)
			z.TXT["rsa._domainkey.example.test"] = []string{"v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)}
			h := start(b, Config{Policy: bc.policy, Checker: authres.Checker{Resolver: z}})
			sel := "ed"
			if _, ok := bc.signer.(*rsa.PrivateKey); ok {
				sel = "rsa"
			}
			var signed bytes.Buffer
			if err := dkim.Sign(&signed, strings.NewReader(plain+body), &dkim.SignOptions{Domain: "example.test", Selector: sel, Signer: bc.signer}); err != nil {
				b.Fatal(err)
			}
			benchSession(b, h, signed.String(), bc.want)
		})
	}
}

var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func benchSession(b *testing.B, h *harness, msg, want string) {
	c := gomilter.NewClient("unix", h.addr)
	s, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	fields, body := splitMessage(b, msg)
	if _, err := s.Conn("client.test", gomilter.FamilyInet, 40000, "192.0.2.1"); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Helo("mta.example.test"); err != nil {
		b.Fatal(err)
	}
	durations := make([]time.Duration, 0, b.N)
	for b.Loop() {
		t0 := time.Now()
		s.Mail("<bounce@example.test>", "")
		s.Rcpt("<me@quietmx.test>", "")
		s.DataStart()
		for _, f := range fields {
			s.HeaderField(f.name, f.value, nil)
		}
		s.HeaderEnd()
		mods, act, err := s.BodyReadFrom(strings.NewReader(body))
		if err != nil || act.Type != gomilter.ActionAccept || len(mods) != 1 || !strings.Contains(mods[0].HeaderValue, want) {
			b.Fatalf("%v %v %v", mods, act, err)
		}
		durations = append(durations, time.Since(t0))
	}
	b.ReportMetric(float64(median(durations).Microseconds()), "median-µs")
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}
