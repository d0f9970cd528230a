//go:build e2e

package e2e

// Helpers for the fault, lifecycle and forwarding scenarios (faults_test.go,
// lifecycle_test.go, forward_test.go): the Postfix queue, the "never
// bounce" checks, log polling, atomic spec edits, restarts, certificates.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"quietmx/e2e/harness"
	"quietmx/e2e/oracle"
	"quietmx/internal/passwd"
)

const (
	e2eDomain = "e2e.example"
	// The one password of every test mailbox (a password_file in the spec
	// directory, hashed by the renderer).
	testPassword = "e2e-secret"
)

// testPasswordHash is testPassword as an {ARGON2ID} hash with libsodium's
// minimum cost: the default cost (64 MiB, 3 passes) makes every render and
// every IMAP login of these tests take CPU seconds on a busy machine, and
// what is under test here is not the hash.
var testPasswordHash = sync.OnceValue(func() string {
	h, err := passwd.HashWith([]byte(testPassword), nil, passwd.Params{Memory: 8, Time: 1, Threads: 1})
	if err != nil {
		panic(err)
	}
	return h
})

// specHeader is the start of a spec: host, domain, and mailboxes, all with
// testPassword. Each mailbox is a local part at e2eDomain with its default
// Maildir, or "local=/maildir/path".
func specHeader(mailboxes ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "hostname: %s\ndomains:\n  - %s\nmailboxes:\n", defaultHost, e2eDomain)
	for _, m := range mailboxes {
		local, dir, custom := strings.Cut(m, "=")
		fmt.Fprintf(&b, "  - login: %s@%s\n    password_hash: %q\n", local, e2eDomain, testPasswordHash())
		if custom {
			fmt.Fprintf(&b, "    maildir: %s\n", dir)
		}
	}
	return b.String()
}

// maildirOf is the default Maildir of a mailbox made by specHeader.
func maildirOf(local string) string {
	return "/var/mail/vmail/" + e2eDomain + "/" + local + "/Maildir"
}

func addr(local string) string { return local + "@" + e2eDomain }

// specFiles are the files every spec of these tests needs beside it.
func specFiles() map[string]string { return map[string]string{"password": testPassword + "\n"} }

// writeAtomic replaces a file in the (bind-mounted) spec directory the way
// an editor that saves safely does: a temporary file, then rename. The
// supervisor never sees half a file.
func writeAtomic(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(tmp, mode)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// EditSpec replaces the spec on the mounted spec directory.
func (a *Appliance) EditSpec(content string) {
	a.t.Helper()
	writeAtomic(a.t, filepath.Join(a.SpecDir, "quietmx.yaml"), []byte(content), 0o644)
}

// CountLog counts the lines of the container log containing s.
func (a *Appliance) CountLog(s string) int {
	n := 0
	for _, l := range strings.Split(a.Logs(), "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// WaitLog waits until at least n lines of the container log contain s.
func (a *Appliance) WaitLog(s string, n int, within time.Duration) {
	a.t.Helper()
	got := 0
	waitFor(a.t, within, func() bool { got = a.CountLog(s); return got >= n },
		func() string { return fmt.Sprintf("container log: %d line(s) with %q, want %d", got, s, n) })
}

// EditSpecAndWait edits the spec and waits for the supervisor's verdict:
// want is "applied" or "REJECTED".
func (a *Appliance) EditSpecAndWait(content, want string) {
	a.t.Helper()
	before := a.CountLog("quietmx: " + want)
	a.EditSpec(content)
	a.WaitLog("quietmx: "+want, before+1, 30*time.Second)
}

// Queue lists the Postfix queue (postqueue -j).
func (a *Appliance) Queue() []oracle.QueueEntry {
	a.t.Helper()
	q, err := oracle.ParseQueue(a.MustExec("postqueue", "-j"))
	if err != nil {
		a.t.Fatal(err)
	}
	return q
}

// WaitQueued waits until a message for rcpt is in the queue, deferred
// with a reason, and returns it.
func (a *Appliance) WaitQueued(rcpt string, within time.Duration) oracle.QueueEntry {
	a.t.Helper()
	var found oracle.QueueEntry
	var q []oracle.QueueEntry
	waitFor(a.t, within, func() bool {
		q = a.Queue()
		for _, e := range q {
			for _, r := range e.Recipients {
				if strings.EqualFold(r.Address, rcpt) && r.DelayReason != "" {
					found = e
					return true
				}
			}
		}
		return false
	}, func() string { return fmt.Sprintf("no deferred message for %s in the queue: %v", rcpt, q) })
	return found
}

// WaitQueueEmpty waits until the Postfix queue is empty.
func (a *Appliance) WaitQueueEmpty(within time.Duration) {
	a.t.Helper()
	var q []oracle.QueueEntry
	waitFor(a.t, within, func() bool { q = a.Queue(); return len(q) == 0 },
		func() string { return fmt.Sprintf("queue not empty: %v", q) })
}

// FlushUntilEmpty asks Postfix to retry the deferred queue (postqueue -f,
// every 2 s) until the queue is empty.
func (a *Appliance) FlushUntilEmpty(within time.Duration) {
	a.t.Helper()
	var q []oracle.QueueEntry
	var last time.Time
	waitFor(a.t, within, func() bool {
		if q = a.Queue(); len(q) == 0 {
			return true
		}
		if time.Since(last) > 2*time.Second {
			a.Exec("postqueue", "-f")
			last = time.Now()
		}
		return false
	}, func() string { return fmt.Sprintf("queue not empty: %v", q) })
}

// Violations runs the never-bounce and no-relay oracle over the whole
// container log and the queue.
func (a *Appliance) Violations(expect ...oracle.Expect) []oracle.Violation {
	a.t.Helper()
	var e oracle.Expect
	if len(expect) > 0 {
		e = expect[0]
	}
	return oracle.Check(a.Logs(), a.Queue(), e)
}

// AssertNoBounce checks the promise the appliance exists for (the
// oracle): only deliveries and deferrals the agent asked for, no bounce in
// any form (bounced, SOFTBOUNCE, expired, a pipe time-limit kill, a 5.x.x
// status), no message from the null sender, no relay. expect names what
// the scenario provoked on purpose.
func (a *Appliance) AssertNoBounce(expect ...oracle.Expect) {
	a.t.Helper()
	for _, v := range a.Violations(expect...) {
		a.t.Errorf("oracle: %s", v)
	}
}

// NewIMAP logs in as a mailbox of specHeader.
func (a *Appliance) NewIMAP(local string) *imapclient.Client {
	a.t.Helper()
	return a.IMAP(addr(local), testPassword)
}

// Mailbox waits until the INBOX of a specHeader mailbox holds at least n
// messages and returns them by Message-ID. It uses a fresh IMAPS session
// each time: a session that has the mailbox selected may answer STATUS
// from its stale view.
func (a *Appliance) Mailbox(local string, n int, within time.Duration) map[string][][]byte {
	a.t.Helper()
	c := a.NewIMAP(local)
	defer c.Logout()
	return ByMessageID(WaitMessages(a.t, c, "INBOX", n, within))
}

// ByMessageID and Intact are the nothing-lost oracle's.
var (
	ByMessageID = oracle.ByMessageID
	Intact      = oracle.Intact
)

// MessageOfSize is a message with a known Message-ID and a body of about size
// bytes (lines of printable text), CRLF line endings, for byte comparison.
func MessageOfSize(from, to, id string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s>\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		from, to, id, id, time.Now().Format(time.RFC1123Z))
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%s line %06d abcdefghijklmnopqrstuvwxyz0123456789\r\n", id, i)
	}
	fmt.Fprintf(&b, "-- end of %s\r\n", id)
	return b.Bytes()
}

// waitReadyAgain waits until the container log has n "ready" lines (a
// restarted container keeps its old log, so the harness's wait strategy
// would match at once), then re-reads the published ports.
func (a *Appliance) waitReadyAgain(n int) {
	a.t.Helper()
	a.WaitLog("quietmx: ready", n, 90*time.Second)
	a.SMTPAddr = a.addr("25/tcp")
	a.IMAPAddr = a.addr("993/tcp")
}

// Restart stops the container (SIGTERM, as docker stop) and starts the same
// container again.
func (a *Appliance) Restart() {
	a.t.Helper()
	ctx := context.Background()
	ready := a.CountLog("quietmx: ready")
	timeout := 20 * time.Second
	if err := a.C.Stop(ctx, &timeout); err != nil {
		a.t.Fatalf("stop: %v", err)
	}
	if err := a.C.Start(ctx); err != nil {
		a.t.Fatalf("start again: %v", err)
	}
	a.waitReadyAgain(ready + 1)
}

// Stop stops the container (it can be started again with StartAgain).
func (a *Appliance) Stop() {
	a.t.Helper()
	timeout := 20 * time.Second
	if err := a.C.Stop(context.Background(), &timeout); err != nil {
		a.t.Fatalf("stop: %v", err)
	}
}

// StartAgain starts a stopped container and waits until it is ready.
func (a *Appliance) StartAgain() {
	a.t.Helper()
	ready := a.CountLog("quietmx: ready")
	if err := a.C.Start(context.Background()); err != nil {
		a.t.Fatalf("start again: %v", err)
	}
	a.waitReadyAgain(ready + 1)
}

// ContainerState is the part of `docker inspect` that tells a restart.
func (a *Appliance) ContainerState() (startedAt string, restarts int) {
	a.t.Helper()
	info, err := a.C.Inspect(context.Background())
	if err != nil {
		a.t.Fatal(err)
	}
	return info.State.StartedAt, info.RestartCount
}

// Cert is a certificate and key generated for a test.
type Cert struct {
	CertPEM, KeyPEM []byte
	X509            *x509.Certificate
	Fingerprint     string // SHA-256 of the DER, hex
}

// NewCert makes a self-signed certificate for host with crypto/x509.
func NewCert(t *testing.T, host string) Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	sum := sha256.Sum256(der)
	return Cert{
		CertPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		X509:        c,
		Fingerprint: hex.EncodeToString(sum[:]),
	}
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// SMTPCertFingerprint runs EHLO and STARTTLS on port 25 and returns the
// SHA-256 fingerprint of the certificate the server presented (verified
// against cfg).
func SMTPCertFingerprint(address string, cfg *tls.Config) (string, error) {
	c, err := harness.DialStartTLS(address, helo, cfg.Clone())
	if err != nil {
		return "", err
	}
	defer c.Close()
	st, ok := c.TLSConnectionState()
	if !ok || len(st.PeerCertificates) == 0 {
		return "", fmt.Errorf("no peer certificate")
	}
	c.Quit()
	return fingerprint(st.PeerCertificates[0]), nil
}

// IMAPSCertFingerprint completes a TLS handshake on port 993 and returns the
// fingerprint of the server's certificate (verified against cfg).
func IMAPSCertFingerprint(address string, cfg *tls.Config) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", address, cfg.Clone())
	if err != nil {
		return "", err
	}
	defer conn.Close()
	st := conn.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return "", fmt.Errorf("no peer certificate")
	}
	return fingerprint(st.PeerCertificates[0]), nil
}

// PinnedTLS trusts exactly the given certificates for the appliance's name.
func PinnedTLS(host string, certs ...*x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return &tls.Config{ServerName: host, RootCAs: pool, MinVersion: tls.VersionTLS12}
}
