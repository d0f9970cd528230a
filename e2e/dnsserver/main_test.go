package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"quietmx/internal/authres"
)

const zoneText = `$ORIGIN example.test.
$TTL 60
@        IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
@        IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc   IN TXT "v=DMARC1; p=reject"
mta      IN A   192.0.2.1
deep.sub IN TXT "x"
$ORIGIN other.test.
@        IN SOA ns.other.test. hostmaster.other.test. 1 3600 600 86400 60
`

// serve runs the server in-process on a free port and returns its address
// and the files a test may change.
func serve(t *testing.T, zone string) (addr, zoneFile, modeFile string) {
	t.Helper()
	dir := t.TempDir()
	zoneFile, modeFile = filepath.Join(dir, "zone"), filepath.Join(dir, "mode")
	if err := os.WriteFile(zoneFile, []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &server{zoneFile: zoneFile, modeFile: modeFile, log: log.New(io.Discard, "", 0)}
	if err := s.load(); err != nil {
		t.Fatal(err)
	}
	udp, tcp, err := s.listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return udp.PacketConn.LocalAddr().String(), zoneFile, modeFile
}

func query(t *testing.T, addr, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", network, name, err)
	}
	return r
}

func TestAnswers(t *testing.T) {
	addr, _, _ := serve(t, zoneText)
	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
		aa      bool
	}{
		{"example.test.", dns.TypeTXT, dns.RcodeSuccess, 1, true},
		{"EXAMPLE.Test.", dns.TypeTXT, dns.RcodeSuccess, 1, true},
		{"_dmarc.example.test.", dns.TypeTXT, dns.RcodeSuccess, 1, true},
		{"mta.example.test.", dns.TypeA, dns.RcodeSuccess, 1, true},
		{"mta.example.test.", dns.TypeTXT, dns.RcodeSuccess, 0, true}, // NODATA
		{"sub.example.test.", dns.TypeTXT, dns.RcodeSuccess, 0, true}, // empty non-terminal
		{"nope.example.test.", dns.TypeTXT, dns.RcodeNameError, 0, true},
		{"_dmarc.other.test.", dns.TypeTXT, dns.RcodeNameError, 0, true},
		{"example.org.", dns.TypeTXT, dns.RcodeRefused, 0, false},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			r := query(t, addr, network, tc.name, tc.qtype)
			if r.Rcode != tc.rcode || len(r.Answer) != tc.answers || r.Authoritative != tc.aa {
				t.Errorf("%s %s %s: rcode %s, %d answers, aa %v; want %s, %d, %v", network, tc.name, dns.TypeToString[tc.qtype],
					dns.RcodeToString[r.Rcode], len(r.Answer), r.Authoritative, dns.RcodeToString[tc.rcode], tc.answers, tc.aa)
			}
			if tc.answers == 0 && tc.rcode != dns.RcodeRefused && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
				t.Errorf("%s %s: a negative answer without the SOA: %v", network, tc.name, r.Ns)
			}
		}
	}
}

func TestTruncation(t *testing.T) {
	long := strings.Repeat(`"`+strings.Repeat("k", 250)+`" `, 4)
	addr, _, _ := serve(t, zoneText+"$ORIGIN example.test.\nlong IN TXT "+long+"\n")
	if r := query(t, addr, "udp", "long.example.test.", dns.TypeTXT); !r.Truncated {
		t.Errorf("a 1000-byte answer was not truncated over UDP without EDNS")
	}
	if r := query(t, addr, "tcp", "long.example.test.", dns.TypeTXT); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("over TCP: %v", r)
	}
}

func TestModesAndReload(t *testing.T) {
	addr, zoneFile, modeFile := serve(t, zoneText)
	os.WriteFile(modeFile, []byte("servfail\n"), 0o644)
	if r := query(t, addr, "udp", "example.test.", dns.TypeTXT); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("servfail mode: %s", dns.RcodeToString[r.Rcode])
	}
	os.WriteFile(modeFile, []byte("drop"), 0o644)
	m := new(dns.Msg)
	m.SetQuestion("example.test.", dns.TypeTXT)
	if _, _, err := (&dns.Client{Timeout: 300 * time.Millisecond}).Exchange(m, addr); err == nil {
		t.Error("drop mode answered")
	}
	os.Remove(modeFile)
	// A new record appears once the file changes.
	later := time.Now().Add(2 * time.Second)
	os.WriteFile(zoneFile, []byte(zoneText+"$ORIGIN example.test.\nnew IN TXT \"fresh\"\n"), 0o644)
	os.Chtimes(zoneFile, later, later)
	if r := query(t, addr, "udp", "new.example.test.", dns.TypeTXT); len(r.Answer) != 1 {
		t.Errorf("the changed zone file was not read: %v", r)
	}
	// A broken file keeps the zones served before.
	os.WriteFile(zoneFile, []byte("this is not a zone file ((("), 0o644)
	os.Chtimes(zoneFile, later.Add(time.Second), later.Add(time.Second))
	if r := query(t, addr, "udp", "new.example.test.", dns.TypeTXT); len(r.Answer) != 1 {
		t.Errorf("a broken zone file dropped the zones: %v", r)
	}
}

func TestNoSOA(t *testing.T) {
	f := filepath.Join(t.TempDir(), "zone")
	os.WriteFile(f, []byte("a.test. 60 IN TXT \"x\"\n"), 0o644)
	s := &server{zoneFile: f, log: log.New(io.Discard, "", 0)}
	if err := s.load(); err == nil || !strings.Contains(err.Error(), "no SOA") {
		t.Fatalf("load: %v", err)
	}
}

// TestSenderChecksOverRealDNS runs the appliance's checks with Go's own
// resolver against the server: an RSA key in several strings, and the
// server failing or silent (temperror, never an error the message would
// wait for).
func TestSenderChecksOverRealDNS(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	rec := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
	var chunks []string
	for len(rec) > 0 {
		n := min(len(rec), 200)
		chunks = append(chunks, `"`+rec[:n]+`"`)
		rec = rec[n:]
	}
	addr, _, modeFile := serve(t, zoneText+"$ORIGIN example.test.\nsel._domainkey IN TXT "+strings.Join(chunks, " ")+"\n")
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	msg := "From: a@example.test\r\nTo: me@quietmx.test\r\nSubject: hi\r\n\r\nHello.\r\n"
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, strings.NewReader(msg), &dkim.SignOptions{Domain: "example.test", Selector: "sel", Signer: key}); err != nil {
		t.Fatal(err)
	}
	env := authres.Envelope{ClientIP: net.ParseIP("198.51.100.7"), Helo: "fwd.test", MailFrom: "fwd@other.test"}
	c := authres.Checker{Resolver: res, Timeout: 2 * time.Second}
	all := authres.Methods{DKIM: true, DMARC: true}

	v := c.Check(context.Background(), env, signed.Bytes(), all).Verdict
	if v.SPF != authres.None || v.DKIM != authres.Pass || v.DMARC != authres.Pass {
		t.Errorf("signed: %+v", v)
	}
	v = c.Check(context.Background(), env, []byte(msg), all).Verdict
	if v.DMARC != authres.Fail || v.Policy != "reject" {
		t.Errorf("unsigned: %+v", v)
	}
	for _, mode := range []string{"servfail", "drop"} {
		os.WriteFile(modeFile, []byte(mode), 0o644)
		start := time.Now()
		v = c.Check(context.Background(), env, signed.Bytes(), all).Verdict
		if v.SPF != authres.TempError || v.DKIM != authres.TempError || v.DMARC != authres.TempError {
			t.Errorf("%s: %+v, want temperror everywhere", mode, v)
		}
		if took := time.Since(start); took > c.Timeout+time.Second {
			t.Errorf("%s: the checks took %v, more than their time limit %v", mode, took, c.Timeout)
		}
	}
}
