//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"net/textproto"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"

	"quietmx/e2e/harness"
	"quietmx/internal/authres"
)

// Docker hands its networks addresses from these ranges; the client the
// appliance sees is the gateway of the test network, somewhere in them.
const dockerRanges = "ip4:172.16.0.0/12 ip4:192.168.0.0/16 ip4:10.0.0.0/8"

// authAppliance is an appliance with DKIM and DMARC on, asking the suite's
// own DNS server, with three mailboxes: me refuses mail that fails DMARC
// under p=reject, junky files it in Junk, plain keeps the default.
type authAppliance struct {
	*Appliance
	dns                *TestDNS
	good, bare, strict SenderDomain
}

func startAuth(t *testing.T, delivery string) *authAppliance {
	t.Helper()
	ctx := context.Background()
	nw, err := network.New(ctx)
	if err != nil {
		t.Fatalf("docker network: %v", err)
	}
	testcontainers.CleanupNetwork(t, nw)
	aa := &authAppliance{
		// Signs, sends from the test network, asks receivers to reject.
		good: NewSenderDomain(t, "good.auth.test", "v=spf1 "+dockerRanges+" -all", "v=DMARC1; p=reject"),
		// Allows only another address; no DMARC record.
		bare: NewSenderDomain(t, "bare.auth.test", "v=spf1 ip4:192.0.2.1 -all", ""),
		// Allows only another address and asks receivers to reject.
		strict: NewSenderDomain(t, "strict.auth.test", "v=spf1 ip4:192.0.2.1 -all", "v=DMARC1; p=reject"),
	}
	// auth.test is served too (SOA only): DMARC falls back to the
	// organizational domain, which must answer "no such name".
	aa.dns = StartDNS(t, nw.Name, Zone(SenderDomain{Name: "auth.test"}, aa.good, aa.bare, aa.strict))
	spec := specHeader("me", "junky", "plain") + `auth: {dkim: true, dmarc: true}
rules:
  aliases:
    me: {type: maildir, value: ` + maildirOf("me") + `}
    junky: {type: maildir, value: ` + maildirOf("junky") + `}
    plain: {type: maildir, value: ` + maildirOf("plain") + `}
  default: {type: maildir, value: ` + maildirOf("plain") + `}
  dmarc_fail:
    me: refuse
    junky: junk
`
	spec += "delivery: " + delivery + "\n"
	aa.Appliance = Start(t, Options{Spec: spec, Files: specFiles(), Network: nw.Name, DNS: []netip.Addr{netip.MustParseAddr(aa.dns.IP)}})
	return aa
}

// authResults returns the message's Authentication-Results values.
func authResults(t *testing.T, msg []byte) []string {
	t.Helper()
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg))).ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		t.Fatalf("header: %v\n%s", err, msg)
	}
	var out []string
	for _, v := range h.Values("Authentication-Results") {
		out = append(out, strings.Join(strings.Fields(v), " "))
	}
	return out
}

// ours returns the one Authentication-Results value written by the
// appliance (failing unless there is exactly one) and the others.
func ours(t *testing.T, host string, msg []byte) (string, []string) {
	t.Helper()
	var mine, others []string
	for _, v := range authResults(t, msg) {
		if authres.Ours(v, host) {
			mine = append(mine, v)
		} else {
			others = append(others, v)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("%d Authentication-Results fields of %s, want exactly 1: %q\n%s", len(mine), host, mine, head(msg))
	}
	return mine[0], others
}

// only returns the one message in a mailbox's folder.
func (a *authAppliance) only(local, folder string) []byte {
	a.t.Helper()
	c := a.NewIMAP(local)
	defer c.Logout()
	msgs := WaitMessages(a.t, c, folder, 1, 60*time.Second)
	if len(msgs) != 1 {
		a.t.Fatalf("%s %s holds %d messages, want 1", local, folder, len(msgs))
	}
	return msgs[0]
}

func authMessage(from, to, subject string) []byte {
	return []byte(fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%d.%s>\r\nDate: %s\r\n\r\nHello.\r\n",
		from, to, subject, time.Now().UnixNano(), from, time.Now().Format(time.RFC1123Z)))
}

// TestAuth sends real mail over SMTP to an appliance whose sender checks
// ask the suite's authoritative DNS server.
func TestAuth(t *testing.T) { forEachDelivery(t, testAuth) }

// testAuth is TestAuth in one delivery mode: the filter is the resident
// agent's in both, and the Junk decision is delivery's (the daemon's under
// lmtp, the pipe agent's -hostname under pipe).
func testAuth(t *testing.T, delivery string) {
	a := startAuth(t, delivery)
	host := a.Hostname

	t.Run("signed and SPF pass: spf, dkim, dmarc pass", func(t *testing.T) {
		from := "alice@good.auth.test"
		a.MustSend(from, []string{addr("plain")}, a.good.Sign(t, authMessage(from, addr("plain"), "signed")))
		got := a.only("plain", "INBOX")
		v, _ := ours(t, host, got)
		for _, want := range []string{"spf=pass", "dkim=pass", "dmarc=pass"} {
			if !strings.Contains(v, want) {
				t.Errorf("Authentication-Results %q lacks %s", v, want)
			}
		}
		if rv, ok := authres.ReadVerdict(got, host); !ok || rv.SPF != authres.Pass || rv.DKIM != authres.Pass || rv.DMARC != authres.Pass {
			t.Errorf("verdict %+v %v", rv, ok)
		}
	})

	t.Run("unsigned from a wrong address: spf fail, delivered; forged results removed, others kept", func(t *testing.T) {
		from := "bob@bare.auth.test"
		msg := append([]byte("Authentication-Results: "+host+"; spf=pass smtp.mailfrom=bob@bare.auth.test; dmarc=pass header.from=bare.auth.test\r\n"+
			"Authentication-Results: mx.elsewhere.example; spf=pass smtp.mailfrom=bob@bare.auth.test\r\n"+
			"Authentication-Results: "+strings.ToUpper(host)+". ; dkim=pass header.d=bare.auth.test\r\n"),
			authMessage(from, addr("junky"), "forged")...)
		a.MustSend(from, []string{addr("junky")}, msg)
		got := a.only("junky", "INBOX")
		v, others := ours(t, host, got)
		if !strings.Contains(v, "spf=fail") || !strings.Contains(v, "dmarc=none") {
			t.Errorf("Authentication-Results %q: want spf=fail and dmarc=none", v)
		}
		if len(others) != 1 || !strings.HasPrefix(others[0], "mx.elsewhere.example;") {
			t.Errorf("other Authentication-Results %q: want the one of mx.elsewhere.example kept", others)
		}
	})

	t.Run("p=reject and DMARC fail: refused with 550 where the owner asked", func(t *testing.T) {
		from := "eve@strict.auth.test"
		_, err := harness.Send(a.SMTPAddr, helo, from, []string{addr("me")}, authMessage(from, addr("me"), "spoofed"))
		if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "DMARC") {
			t.Fatalf("send: %v, want 550 ... DMARC at the end of DATA", err)
		}
		a.WaitLog("milter: refused", 1, 10*time.Second)
		if q := a.Queue(); len(q) != 0 {
			t.Errorf("queue after a refusal: %v", q)
		}
	})

	t.Run("p=reject and DMARC fail: into Junk where the owner asked", func(t *testing.T) {
		from := "eve@strict.auth.test"
		a.MustSend(from, []string{addr("junky")}, authMessage(from, addr("junky"), "spoofed to junk"))
		got := a.only("junky", "Junk")
		if v, _ := ours(t, host, got); !strings.Contains(v, "dmarc=fail") || !strings.Contains(v, "policy.dmarc=reject") {
			t.Errorf("Authentication-Results %q: want dmarc=fail policy.dmarc=reject", v)
		}
		a.WaitLog("auth=dmarc:fail→junk", 1, 10*time.Second)
	})

	// DNS down: every method temperror, the message delivered. A failing
	// server costs nothing; a silent one costs the checker's timeout, plus
	// Postfix's own lookup of the client's name before the milter is asked.
	for _, tc := range []struct {
		mode, local string
		n           int // messages in the INBOX then
		limit       time.Duration
	}{
		{"servfail", "me", 1, authres.DefaultTimeout + 5*time.Second},
		{"drop", "plain", 2, 2*authres.DefaultTimeout + 5*time.Second},
	} {
		t.Run("DNS "+tc.mode+": temperror, delivered, bounded by the checker's timeout", func(t *testing.T) {
			a.dns.SetMode(tc.mode)
			defer a.dns.SetMode("serve")
			from := "carol@good.auth.test"
			t0 := time.Now()
			a.MustSend(from, []string{addr(tc.local)}, a.good.Sign(t, authMessage(from, addr(tc.local), "dns "+tc.mode)))
			took := time.Since(t0)
			c := a.NewIMAP(tc.local)
			defer c.Logout()
			msgs := WaitMessages(t, c, "INBOX", tc.n, 60*time.Second)
			v, _ := ours(t, host, msgs[len(msgs)-1])
			if !strings.Contains(v, "spf=temperror") || !strings.Contains(v, "dmarc=temperror") {
				t.Errorf("Authentication-Results %q: want temperror", v)
			}
			if took > tc.limit {
				t.Errorf("the SMTP transaction took %v with DNS %s (checker timeout %v)", took, tc.mode, authres.DefaultTimeout)
			}
			t.Logf("SMTP transaction with DNS %s: %v", tc.mode, took)
		})
	}

	a.AssertNoBounce()
	// The memory the appliance uses with the checks on, for the record.
	if out, err := exec.Command("docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", a.C.GetContainerID()).Output(); err == nil {
		t.Logf("appliance memory with the checks on (docker stats): %s", strings.TrimSpace(string(out)))
	}
	_, out := a.Exec("sh", "-c", `for s in /proc/[0-9]*/status; do awk '/^Name:/{n=$2} /^VmRSS:/{print n, $2, $3}' "$s"; done 2>/dev/null | sort -k2 -n -r | head -8`)
	t.Logf("largest processes (RSS):\n%s", out)
}
