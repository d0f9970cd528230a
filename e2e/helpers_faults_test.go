//go:build e2e

package e2e

// Helpers for the fault, lifecycle and forwarding scenarios (faults_test.go,
// lifecycle_test.go, forward_test.go): the Postfix queue, the "never
// bounce" checks, log polling, atomic spec edits, restarts, certificates.

import (
	"bufio"
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
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

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

// WaitLog polls the container log until at least n lines contain s.
func (a *Appliance) WaitLog(s string, n int, within time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(within)
	for a.CountLog(s) < n {
		if time.Now().After(deadline) {
			a.t.Fatalf("container log: %d line(s) with %q after %v, want %d", a.CountLog(s), s, within, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// EditSpecAndWait edits the spec and waits for the supervisor's verdict:
// want is "applied" or "REJECTED".
func (a *Appliance) EditSpecAndWait(content, want string) {
	a.t.Helper()
	before := a.CountLog("quietmx: " + want)
	a.EditSpec(content)
	a.WaitLog("quietmx: "+want, before+1, 30*time.Second)
}

// QueueEntry is one message of `postqueue -j`.
type QueueEntry struct {
	QueueName  string `json:"queue_name"`
	QueueID    string `json:"queue_id"`
	Sender     string `json:"sender"`
	Size       int    `json:"message_size"`
	Recipients []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

func (e QueueEntry) String() string {
	var rs []string
	for _, r := range e.Recipients {
		rs = append(rs, fmt.Sprintf("%s (%s)", r.Address, r.DelayReason))
	}
	return fmt.Sprintf("%s %s from=<%s> to %s", e.QueueName, e.QueueID, e.Sender, strings.Join(rs, ", "))
}

// Queue lists the Postfix queue. It fails the test if a message from the
// null sender (a bounce or other notice) is in it: nothing of the kind may
// ever be made.
func (a *Appliance) Queue() []QueueEntry {
	a.t.Helper()
	q := a.QueueAll()
	for _, e := range q {
		if e.Sender == "" {
			a.t.Errorf("the queue holds a message from the null sender (a bounce): %s", e)
		}
	}
	return q
}

// QueueAll lists the Postfix queue (postqueue -j).
func (a *Appliance) QueueAll() []QueueEntry {
	a.t.Helper()
	out := a.MustExec("postqueue", "-j")
	var q []QueueEntry
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e QueueEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			a.t.Fatalf("postqueue -j: %v: %s", err, line)
		}
		q = append(q, e)
	}
	return q
}

// WaitQueued polls the queue until a message for rcpt is there, deferred
// with a reason, and returns it.
func (a *Appliance) WaitQueued(rcpt string, within time.Duration) QueueEntry {
	a.t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, e := range a.Queue() {
			for _, r := range e.Recipients {
				if strings.EqualFold(r.Address, rcpt) && r.DelayReason != "" {
					return e
				}
			}
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("no deferred message for %s in the queue after %v: %v", rcpt, within, a.Queue())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// FlushUntilEmpty asks Postfix to retry the deferred queue (postqueue -f)
// until the queue is empty.
func (a *Appliance) FlushUntilEmpty(within time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(within)
	last := time.Time{}
	for {
		q := a.Queue()
		if len(q) == 0 {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("queue not empty after %v: %v", within, q)
		}
		if time.Since(last) > 2*time.Second {
			a.Exec("postqueue", "-f")
			last = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// AssertNoBounce checks the promise the appliance exists for: the queue
// holds no message from the null sender and the log shows no bounce and
// no non-delivery notification.
func (a *Appliance) AssertNoBounce() {
	a.t.Helper()
	a.Queue() // fails on a null-sender entry
	logs := a.Logs()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "status=bounced") || strings.Contains(l, "non-delivery notification") ||
			strings.Contains(l, "delivery status notification") {
			a.t.Errorf("bounce in the container log: %s", l)
		}
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

// ByMessageID indexes messages by their Message-ID header value.
func ByMessageID(msgs [][]byte) map[string][][]byte {
	out := map[string][][]byte{}
	re := regexp.MustCompile(`(?mi)^Message-ID:\s*(<[^>\r\n]*>)`)
	for _, m := range msgs {
		id := ""
		if sm := re.FindSubmatch(m); sm != nil {
			id = string(sm[1])
		}
		out[id] = append(out[id], m)
	}
	return out
}

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

// Intact reports whether got (as read over IMAP) is the sent message
// complete and alone: it ends with exactly the bytes sent, and what comes
// before them is only trace header fields (Return-Path, Delivered-To,
// Received...: Postfix and the agent prepend them), not a part of another
// message.
func Intact(got, sent []byte) bool {
	if !bytes.HasSuffix(got, sent) {
		return false
	}
	head := got[:len(got)-len(sent)]
	for _, line := range bytes.SplitAfter(head, []byte("\r\n")) {
		if len(line) == 0 {
			continue
		}
		if !traceLine.Match(line) {
			return false
		}
	}
	return true
}

// traceLine is a header field line a trace header may have: a field name
// such as Return-Path:, or a folded continuation.
var traceLine = regexp.MustCompile(`^(?:(?i:return-path|delivered-to|received|x-original-to):|[ \t])[^\r\n]*\r\n$`)

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
	conn, err := net.DialTimeout("tcp", address, 5*time.Second)
	if err != nil {
		return "", err
	}
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	c, err := smtp.NewClient(conn, "")
	if err != nil {
		conn.Close()
		return "", err
	}
	defer c.Close()
	if err := c.Hello("client.e2e.example"); err != nil {
		return "", err
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return "", fmt.Errorf("no STARTTLS offered")
	}
	if err := c.StartTLS(cfg.Clone()); err != nil {
		return "", err
	}
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

// sendStartTLS sends one message over SMTP with STARTTLS, verifying the
// server's certificate against cfg.
func sendStartTLS(address string, cfg *tls.Config, from, to string, msg []byte) error {
	c, err := smtp.Dial(address)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.e2e.example"); err != nil {
		return err
	}
	if err := c.StartTLS(cfg.Clone()); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
