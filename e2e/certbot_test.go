//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Certbot mode against a real ACME CA: Let's Encrypt's Pebble
// (docker/pebble), on the test network as "pebble", validating HTTP-01
// against the appliance's host name on port 80.

// PebbleImage is what docker/pebble/build.sh builds (the tests build it
// when it is missing).
var PebbleImage = envOr("QUIETMX_E2E_PEBBLE_IMAGE", "quietmx-pebble:2.10.3")

const (
	pebbleHost = "pebble"
	pebbleDir  = "https://" + pebbleHost + ":14000/dir"
	// where the appliance finds the CA of Pebble's own HTTPS (tls.ca_file)
	pebbleCAFile = "/etc/quietmx/appliance/pebble-ca.pem"
)

var buildPebble = sync.OnceValue(func() error {
	if exec.Command("docker", "image", "inspect", PebbleImage).Run() == nil {
		return nil
	}
	cmd := exec.Command("bash", "../docker/pebble/build.sh")
	cmd.Env = append(os.Environ(), "PEBBLE_IMAGE="+PebbleImage)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker/pebble/build.sh: %v\n%s", err, out)
	}
	return nil
})

// Pebble is a running Pebble CA.
type Pebble struct {
	C      testcontainers.Container
	CAPEM  string         // the CA that signed Pebble's HTTPS certificate
	caPool *x509.CertPool // the same, for our own requests
	mgmt   string         // host:port of the management interface
}

// testCA makes a CA and a certificate for Pebble's HTTPS signed by it,
// valid for the network alias and for the host's loopback.
func testCA(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "quietmx e2e ACME server CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: pebbleHost},
		DNSNames: []string{pebbleHost, "localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// StartPebble runs Pebble on the network as "pebble", refusing orders for
// the names in blocklist. It is removed when the test ends.
func StartPebble(t *testing.T, netName string, blocklist ...string) *Pebble {
	t.Helper()
	if err := buildPebble(); err != nil {
		t.Fatal(err)
	}
	caPEM, certPEM, keyPEM := testCA(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	cfg, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":           "0.0.0.0:14000",
		"managementListenAddress": "0.0.0.0:15000",
		"certificate":             "/pebble/cert.pem",
		"privateKey":              "/pebble/key.pem",
		"httpPort":                80,
		"tlsPort":                 443,
		"ocspResponderURL":        "",
		"domainBlocklist":         append([]string{"blocked.invalid"}, blocklist...),
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
	}})
	writeFile(t, filepath.Join(dir, "pebble-config.json"), string(cfg), 0o644)
	writeFile(t, filepath.Join(dir, "cert.pem"), string(certPEM), 0o644)
	writeFile(t, filepath.Join(dir, "key.pem"), string(keyPEM), 0o644)
	req := testcontainers.ContainerRequest{
		Image:          PebbleImage,
		Cmd:            []string{"-config", "/pebble/pebble-config.json"},
		Env:            map[string]string{"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
		ExposedPorts:   []string{"15000/tcp"},
		Networks:       []string{netName},
		NetworkAliases: map[string][]string{netName: {pebbleHost}},
		Mounts:         testcontainers.Mounts(testcontainers.BindMount(dir, "/pebble")),
		WaitingFor:     wait.ForLog("Listening on: 0.0.0.0:14000").WithStartupTimeout(30 * time.Second),
	}
	c := startContainer(t, req, "pebble")
	host, _ := c.Host(context.Background())
	port, err := c.MappedPort(context.Background(), "15000/tcp")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &Pebble{C: c, CAPEM: string(caPEM), caPool: pool, mgmt: net.JoinHostPort(host, port.Port())}
}

// Root is Pebble's issuing root (it makes a new one at every start).
func (p *Pebble) Root(t *testing.T) *x509.CertPool {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.caPool, ServerName: pebbleHost},
	}}
	resp, err := client.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble root: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if resp.StatusCode != 200 || !pool.AppendCertsFromPEM(data) {
		t.Fatalf("pebble root: %s %q", resp.Status, data)
	}
	return pool
}

// certbotSpec is the appliance's spec in certbot mode against server.
func certbotSpec(server string) string {
	return specHeader("me") + `tls:
  mode: certbot
  email: hostmaster@` + e2eDomain + `
  server: ` + server + `
  ca_file: ` + pebbleCAFile + `
`
}

func certbotFiles(caPEM string) map[string]string {
	files := specFiles()
	files[filepath.Base(pebbleCAFile)] = caPEM
	return files
}

// servedChain is the chain a port serves: 25 after STARTTLS, 993 directly.
// Nothing is verified here; the caller verifies against the root it means.
func servedChain(port, addr string) ([]*x509.Certificate, error) {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	if port == "993" {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates, nil
	}
	c, err := smtp.Dial(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Hello("client.e2e.example"); err != nil {
		return nil, err
	}
	if err := c.StartTLS(cfg); err != nil {
		return nil, err
	}
	st, _ := c.TLSConnectionState()
	return st.PeerCertificates, c.Quit()
}

// verify checks a served chain against roots for the MX name.
func verify(chain []*x509.Certificate, roots *x509.CertPool, name string) error {
	if len(chain) == 0 {
		return fmt.Errorf("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name})
	return err
}

// spki is the TLSA 3 1 1 association data: SHA-256 of the leaf's
// SubjectPublicKeyInfo.
func spki(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// waitServed polls 25 and 993 until both serve a leaf for which ok holds,
// and returns the leaves.
func (a *Appliance) waitServed(what string, within time.Duration, ok func(chain []*x509.Certificate) error) (smtpLeaf, imapLeaf *x509.Certificate) {
	a.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var errs []string
		leaves := map[string]*x509.Certificate{}
		for port, addr := range map[string]string{"25": a.SMTPAddr, "993": a.IMAPAddr} {
			chain, err := servedChain(port, addr)
			if err == nil {
				err = ok(chain)
			}
			if err != nil {
				errs = append(errs, port+": "+err.Error())
			} else {
				leaves[port] = chain[0]
			}
		}
		if len(errs) == 0 {
			return leaves["25"], leaves["993"]
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s: not served within %v: %s", what, within, strings.Join(errs, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// certbotNetwork is a Docker network of its own for one test, removed at
// its end (after the containers on it, whose clean-ups run first).
func certbotNetwork(t *testing.T) string {
	t.Helper()
	nw, err := network.New(context.Background())
	if err != nil {
		t.Fatalf("docker network: %v", err)
	}
	t.Cleanup(func() { _ = nw.Remove(context.Background()) })
	return nw.Name
}

// keepsCertificate: after a failed first certbot run, whose log line holds
// every string of want, the appliance still serves its self-signed
// certificate on both ports and mail is delivered. It returns the line.
func (a *Appliance) keepsCertificate(failure string, want ...string) string {
	a.t.Helper()
	a.WaitLog(failure, 1, 90*time.Second)
	line := lastLine(a.Logs(), failure)
	for _, w := range append(want, "keeping the current certificate", "next attempt at ") {
		if !strings.Contains(line, w) {
			a.t.Errorf("the failure line lacks %q:\n%s", w, line)
		}
	}
	selfSigned := a.CertPool()
	a.waitServed("the self-signed certificate", 10*time.Second, func(chain []*x509.Certificate) error {
		return verify(chain, selfSigned, a.Hostname)
	})
	const from = "sender@outside.example"
	a.MustSend(from, []string{addr("me")}, Message(from, addr("me"), "no certificate from the CA", "mail flows on the self-signed certificate"))
	a.Mailbox("me", 1, 30*time.Second)
	return line
}

// TestCertbotIssueRenew: at first start the appliance obtains a
// certificate from the CA over HTTP-01 and serves it on 25 and 993; a
// `certbot renew --force-renewal` typed in the container renews, installs
// and reloads within seconds, without a restart, without breaking an SMTP
// session in progress, and with the same key (TLSA 3 1 1 stays valid).
func TestCertbotIssueRenew(t *testing.T) {
	nw := certbotNetwork(t)
	p := StartPebble(t, nw)
	root := p.Root(t)

	t0 := time.Now()
	a := Start(t, Options{Spec: certbotSpec(pebbleDir), Files: certbotFiles(p.CAPEM), Network: nw})
	startedAt, _ := a.ContainerState()
	ready := time.Since(t0)
	issued := func(chain []*x509.Certificate) error { return verify(chain, root, a.Hostname) }
	leaf25, leaf993 := a.waitServed("the first CA-issued certificate", 90*time.Second, issued)
	firstCert := time.Since(t0)
	t.Logf("MEASURE first start → ready %v, → CA-issued certificate served on 25 and 993 %v", ready.Round(time.Millisecond), firstCert.Round(time.Millisecond))
	if !leaf25.Equal(leaf993) {
		t.Errorf("25 and 993 serve different certificates")
	}
	a.WaitLog("certbot certonly: ok", 1, 30*time.Second)
	t.Logf("MEASURE %s", lastLine(a.Logs(), "certbot certonly: ok"))
	before := leaf25
	keyHash := spki(before)

	// The TLSA 3 1 1 pipeline of docs/operations.md, run in the container,
	// gives the same hash as the key served.
	out := a.MustExec("sh", "-c", "openssl x509 -in /var/lib/quietmx/tls/cert.pem -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1")
	if strings.TrimSpace(out) != keyHash {
		t.Errorf("documented TLSA pipeline gives %q, the served key's SPKI hash is %s", strings.TrimSpace(out), keyHash)
	}

	// An SMTP session open across the renewal.
	const from = "sender@outside.example"
	sess, err := smtp.Dial(a.SMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Hello("client.e2e.example"); err != nil {
		t.Fatal(err)
	}
	if err := sess.StartTLS(&tls.Config{ServerName: a.Hostname, RootCAs: root, MinVersion: tls.VersionTLS12}); err != nil {
		t.Fatalf("STARTTLS verifying against Pebble's root: %v", err)
	}
	if err := sess.Mail(from); err != nil {
		t.Fatal(err)
	}
	if err := sess.Rcpt(addr("me")); err != nil {
		t.Fatal(err)
	}

	t1 := time.Now()
	code, renewOut := a.Exec("certbot", "renew", "--force-renewal")
	renewRan := time.Since(t1)
	if code != 0 || !strings.Contains(renewOut, "Congratulations, all renewals succeeded") {
		t.Fatalf("certbot renew --force-renewal: exit %d:\n%s", code, renewOut)
	}
	renewed := func(chain []*x509.Certificate) error {
		if err := issued(chain); err != nil {
			return err
		}
		if chain[0].Equal(before) {
			return fmt.Errorf("still the certificate before the renewal")
		}
		return nil
	}
	after25, after993 := a.waitServed("the renewed certificate", 30*time.Second, renewed)
	served := time.Since(t1)
	t.Logf("MEASURE certbot renew --force-renewal ran %v; renewal start → new certificate served on 25 and 993 %v", renewRan.Round(time.Millisecond), served.Round(time.Millisecond))
	if !after25.Equal(after993) {
		t.Errorf("after the renewal 25 and 993 serve different certificates")
	}
	if got := spki(after25); got != keyHash {
		t.Errorf("the renewal changed the key: SPKI sha256 %s, was %s (a TLSA 3 1 1 record would break)", got, keyHash)
	}

	// The session opened before the renewal completes.
	msg := Message(from, addr("me"), "across the renewal", "sent in a session opened before the renewal")
	w, err := sess.Data()
	if err != nil {
		t.Fatalf("DATA after the renewal: %v", err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA after the renewal: %v", err)
	}
	if err := sess.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	// A message queued while the deploy hook reloads Postfix can find the
	// queue manager restarting ("problem talking to service rewrite") and
	// wait for its next queue run, minutes away: it is kept, not lost.
	// Flush so the test sees it delivered now.
	a.Exec("postqueue", "-f")
	a.Mailbox("me", 1, 30*time.Second)
	if now, restarts := a.ContainerState(); now != startedAt || restarts != 0 {
		t.Errorf("the container restarted (started %s, then %s; %d restarts)", startedAt, now, restarts)
	}

	// A restart that finds the certificate files gone serves the
	// self-signed one only until the first certbot run, which is not due
	// to renew but installs certbot's certificate: the same key again.
	a.MustExec("rm", "/var/lib/quietmx/tls/cert.pem", "/var/lib/quietmx/tls/key.pem")
	t2 := time.Now()
	a.Restart()
	back25, _ := a.waitServed("certbot's certificate after a restart", 60*time.Second, issued)
	t.Logf("MEASURE restart without the certificate files → certbot's certificate served again %v", time.Since(t2).Round(time.Millisecond))
	if !back25.Equal(after25) {
		t.Errorf("after the restart a certificate other than the renewed one is served")
	}
	if spki(back25) != keyHash {
		t.Errorf("after the restart the key changed")
	}
	a.WaitLog("installed certbot's current certificate", 1, 10*time.Second)
}

// TestCertbotCAUnreachable: with the CA unreachable at first start the
// appliance starts on its self-signed certificate, mail flows, and the log
// says why certbot failed and when it tries again.
func TestCertbotCAUnreachable(t *testing.T) {
	nw := certbotNetwork(t)
	caPEM, _, _ := testCA(t) // no Pebble on this network
	a := Start(t, Options{Spec: certbotSpec(pebbleDir), Files: certbotFiles(string(caPEM)), Network: nw})
	a.keepsCertificate("certbot certonly failed: ", pebbleHost, "(in 1m0s)")
}

// TestCertbotOrderRefused: the CA refuses the order; the certificate in
// use (here the self-signed one) stays, and the log says why.
func TestCertbotOrderRefused(t *testing.T) {
	nw := certbotNetwork(t)
	p := StartPebble(t, nw, defaultHost)
	a := Start(t, Options{Spec: certbotSpec(pebbleDir), Files: certbotFiles(p.CAPEM), Network: nw})
	line := a.keepsCertificate("certbot certonly failed: ", "the CA answered rejectedIdentifier: ", defaultHost)
	t.Logf("refusal logged as: %s", line)
}

// TestCertbotPort80Taken: another process holds port 80 in the
// appliance's network namespace (as a web server on the host does with
// network_mode: host). The appliance says so at start, runs no certbot,
// and mail flows on the self-signed certificate.
func TestCertbotPort80Taken(t *testing.T) {
	ctx := context.Background()
	nw := certbotNetwork(t)
	p := StartPebble(t, nw)

	// The squatter owns the network namespace (and so the published
	// ports and the name on the network); the appliance joins it.
	squatter, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{Started: true, ContainerRequest: testcontainers.ContainerRequest{
		Image:          Image,
		Entrypoint:     []string{"python3", "-u", "-m", "http.server", "80"},
		Hostname:       defaultHost,
		ExposedPorts:   []string{"25/tcp", "993/tcp"},
		Networks:       []string{nw},
		NetworkAliases: map[string][]string{nw: {defaultHost}},
		WaitingFor:     wait.ForLog("Serving HTTP on").WithStartupTimeout(30 * time.Second),
		ConfigModifier: func(c *container.Config) { c.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}} },
	}})
	if squatter != nil {
		t.Cleanup(func() { _ = squatter.Terminate(context.Background()) })
	}
	if err != nil {
		t.Fatalf("start the port 80 squatter: %v", err)
	}

	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	writeFile(t, filepath.Join(dir, "quietmx.yaml"), certbotSpec(pebbleDir), 0o644)
	for name, content := range certbotFiles(p.CAPEM) {
		writeFile(t, filepath.Join(dir, name), content, 0o644)
	}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{Started: true, ContainerRequest: testcontainers.ContainerRequest{
		Image:      Image,
		Env:        map[string]string{"QUIETMX_SPEC": "/etc/quietmx/appliance/quietmx.yaml"},
		WaitingFor: wait.ForLog("quietmx: ready").WithStartupTimeout(90 * time.Second),
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.CapDrop = []string{"ALL"}
			hc.CapAdd = capAdd
			hc.Binds = append(hc.Binds, dir+":/etc/quietmx/appliance:ro")
			hc.NetworkMode = container.NetworkMode("container:" + squatter.GetContainerID())
		},
	}})
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				dumpLogs(t, c)
			}
			_ = c.Terminate(context.Background())
		})
	}
	if err != nil {
		t.Fatalf("start appliance: %v", err)
	}
	a := &Appliance{t: t, C: c, SpecDir: dir, Hostname: defaultHost}
	host, _ := squatter.Host(ctx)
	for port, dst := range map[string]*string{"25/tcp": &a.SMTPAddr, "993/tcp": &a.IMAPAddr} {
		mp, err := squatter.MappedPort(ctx, port)
		if err != nil {
			t.Fatal(err)
		}
		*dst = net.JoinHostPort(host, mp.Port())
	}

	logs := a.Logs()
	errAt, readyAt := strings.Index(logs, "ERROR: certbot mode: port 80 is taken"), strings.Index(logs, "quietmx: ready")
	if errAt < 0 || errAt > readyAt {
		t.Errorf("no port 80 error before ready:\n%s", logs)
	}
	a.keepsCertificate("certbot certonly failed: port 80 is taken")
	if strings.Contains(a.Logs(), "ACME HTTP-01 challenge answered") {
		t.Errorf("a challenge was answered although port 80 is taken")
	}
}
