//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"quietmx/internal/authres"
)

// dnsName is the DNS server's name on the test network.
const dnsName = "dns.auth.test"

// TestDNS is the suite's authoritative DNS (e2e/dnsserver) in a container:
// the appliance's sender checks ask it about the test domains. Point the
// appliance at it with its IP as the container's DNS server
// (container.HostConfig.DNS).
type TestDNS struct {
	t        *testing.T
	C        testcontainers.Container
	IP       string // on the test network
	Addr     string // published UDP and TCP port on the host, for the suite's own questions
	zoneFile string
}

// SenderDomain is a test domain that sends mail: its SPF record, its DMARC
// record ("" for none) and a DKIM key published under Selector.
type SenderDomain struct {
	Name     string
	SPF      string // e.g. "v=spf1 ip4:172.16.0.0/12 -all"; "" for none
	DMARC    string // e.g. "v=DMARC1; p=reject"; "" for none
	Selector string
	Key      *rsa.PrivateKey
}

// NewSenderDomain makes a domain with a fresh 2048-bit RSA key (what most
// senders use) under selector "e2e".
func NewSenderDomain(t *testing.T, name, spf, dmarc string) SenderDomain {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return SenderDomain{Name: name, SPF: spf, DMARC: dmarc, Selector: "e2e", Key: k}
}

// Zone is the master-file text for the domains, one zone each.
func Zone(domains ...SenderDomain) string {
	var b strings.Builder
	b.WriteString("$TTL 30\n")
	for _, d := range domains {
		fmt.Fprintf(&b, "$ORIGIN %s.\n@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 30\n", d.Name, d.Name, d.Name)
		if d.SPF != "" {
			fmt.Fprintf(&b, "@ IN TXT %q\n", d.SPF)
		}
		if d.DMARC != "" {
			fmt.Fprintf(&b, "_dmarc IN TXT %q\n", d.DMARC)
		}
		if d.Key != nil {
			pub, err := x509.MarshalPKIXPublicKey(&d.Key.PublicKey)
			if err != nil {
				panic(err)
			}
			fmt.Fprintf(&b, "%s._domainkey IN TXT %s\n", d.Selector, txtStrings("v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(pub)))
		}
	}
	return b.String()
}

// txtStrings splits a long TXT value into quoted strings of at most 255
// bytes, as a DKIM key record must be.
func txtStrings(v string) string {
	var parts []string
	for len(v) > 0 {
		n := min(len(v), 250)
		parts = append(parts, `"`+v[:n]+`"`)
		v = v[n:]
	}
	return strings.Join(parts, " ")
}

// Sign returns msg signed by d (relaxed/relaxed, every header field).
func (d SenderDomain) Sign(t *testing.T, msg []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{
		Domain: d.Name, Selector: d.Selector, Signer: d.Key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// StartDNS runs e2e/dnsserver on netName as dnsName:53 with zone, in a
// container of the appliance image with the binary bind-mounted, as
// StartSmarthost does.
func StartDNS(t *testing.T, netName, zone string) *TestDNS {
	t.Helper()
	bin := buildStatic(t, "dnsserver")
	zdir := t.TempDir()
	os.Chmod(zdir, 0o755)
	zoneFile := filepath.Join(zdir, "zone")
	writeFile(t, zoneFile, zone, 0o644)
	req := testcontainers.ContainerRequest{
		Image:          Image,
		Entrypoint:     []string{"/dnsserver/dnsserver", "-listen", ":53", "-zone", "/zone/zone", "-dir", "/tmp/dnsserver"},
		ExposedPorts:   []string{"53/udp", "53/tcp"},
		Networks:       []string{netName},
		NetworkAliases: map[string][]string{netName: {dnsName}},
		WaitingFor:     wait.ForLog("dnsserver: ready").WithStartupTimeout(30 * time.Second),
		ConfigModifier: func(c *container.Config) {
			c.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
		},
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.Binds = append(hc.Binds, bin+":/dnsserver:ro", zdir+":/zone:ro")
		},
	}
	ctx := context.Background()
	c := startContainer(t, req, "the DNS server")
	ip, err := c.ContainerIP(ctx)
	if err != nil {
		t.Fatalf("DNS server IP: %v", err)
	}
	port, err := c.MappedPort(ctx, "53/udp")
	if err != nil {
		t.Fatalf("DNS server port: %v", err)
	}
	d := &TestDNS{t: t, C: c, IP: ip, Addr: net.JoinHostPort("127.0.0.1", port.Port()), zoneFile: zoneFile}
	return d
}

// startContainer starts req and removes the container when the test ends
// (its log is shown first when the test failed).
func startContainer(t *testing.T, req testcontainers.ContainerRequest, what string) testcontainers.Container {
	t.Helper()
	c, err := testcontainers.GenericContainer(context.Background(), testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				dumpLogs(t, c)
			}
			_ = c.Terminate(context.Background())
		})
	}
	if err != nil {
		t.Fatalf("start %s: %v", what, err)
	}
	return c
}

// SetZone replaces the zone file; the server reads it at the next question.
func (d *TestDNS) SetZone(zone string) {
	d.t.Helper()
	writeAtomic(d.t, d.zoneFile, []byte(zone), 0o644)
}

// SetMode switches the server: "serve", "servfail" or "drop" (no answer:
// DNS down as a resolver sees it).
func (d *TestDNS) SetMode(mode string) {
	d.t.Helper()
	code, r, err := d.C.Exec(context.Background(), []string{"sh", "-c",
		`mkdir -p /tmp/dnsserver && printf '%s\n' "$1" > /tmp/dnsserver/mode.tmp && mv /tmp/dnsserver/mode.tmp /tmp/dnsserver/mode`, "sh", mode},
		tcexec.Multiplexed())
	if err != nil || code != 0 {
		out, _ := io.ReadAll(r)
		d.t.Fatalf("DNS server mode %s: %v, exit %d: %s", mode, err, code, out)
	}
}

// Questions is the server's log: one line per question asked.
func (d *TestDNS) Questions() string {
	d.t.Helper()
	r, err := d.C.Logs(context.Background())
	if err != nil {
		d.t.Fatalf("DNS server log: %v", err)
	}
	b, _ := io.ReadAll(r)
	return string(b)
}

// Resolver asks the server through its published port, for the suite's
// own checks.
func (d *TestDNS) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dl net.Dialer
		if network == "tcp" {
			p, err := d.C.MappedPort(ctx, "53/tcp")
			if err != nil {
				return nil, err
			}
			return dl.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", p.Port()))
		}
		return dl.DialContext(ctx, network, d.Addr)
	}}
}

// TestDNSServerContainer shows the container serving the sender records
// that the checks need, and "DNS down" reaching them as temperror. The
// appliance's own e2e tests start it the same way.
func TestDNSServerContainer(t *testing.T) {
	ctx := context.Background()
	nw, err := network.New(ctx)
	if err != nil {
		t.Fatalf("docker network: %v", err)
	}
	testcontainers.CleanupNetwork(t, nw)
	sender := NewSenderDomain(t, "sender.auth.test", "v=spf1 ip4:192.0.2.1 -all", "v=DMARC1; p=reject")
	d := StartDNS(t, nw.Name, Zone(sender))
	msg := []byte("From: a@sender.auth.test\r\nTo: me@" + e2eDomain + "\r\nSubject: signed\r\n\r\nHello.\r\n")
	c := authres.Checker{Resolver: d.Resolver(), Timeout: 3 * time.Second}
	env := authres.Envelope{ClientIP: net.ParseIP("192.0.2.1"), Helo: "mta.sender.auth.test", MailFrom: "a@sender.auth.test"}
	all := authres.Methods{DKIM: true, DMARC: true}
	if v := c.Check(ctx, env, sender.Sign(t, msg), all).Verdict; v.SPF != authres.Pass || v.DKIM != authres.Pass || v.DMARC != authres.Pass {
		t.Fatalf("signed: %+v\n%s", v, d.Questions())
	}
	d.SetMode("drop")
	if v := c.Check(ctx, env, sender.Sign(t, msg), all).Verdict; v.SPF != authres.TempError || v.DMARC != authres.TempError {
		t.Fatalf("DNS down: %+v", v)
	}
	d.SetMode("serve")
	d.SetZone(Zone(sender) + "$ORIGIN sender.auth.test.\nlate IN TXT \"x\"\n")
	if txt, err := d.Resolver().LookupTXT(ctx, "late.sender.auth.test"); err != nil || len(txt) != 1 {
		t.Fatalf("a changed zone: %v %v", txt, err)
	}
}
