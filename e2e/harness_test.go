//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	"github.com/testcontainers/testcontainers-go/wait"

	"quietmx/e2e/harness"
)

// Image is the image `make image` builds.
var Image = envOr("QUIETMX_E2E_IMAGE", "quietmx:latest")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	// No registry here: Ryuk's image cannot be pulled (we remove our own
	// containers), and /.dockerenv would make testcontainers look for the
	// daemon on an unreachable gateway. The Makefile sets these too.
	for k, v := range map[string]string{"TESTCONTAINERS_RYUK_DISABLED": "true", "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1"} {
		if os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
	if err := exec.Command("docker", "image", "inspect", Image).Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: image %s not found: run `make image` first (a missing image fails the suite, it does not skip it)\n", Image)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// Capabilities the appliance runs with (compose.yaml): the suite uses the
// same set, so a missing capability fails here first.
var capAdd = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "NET_BIND_SERVICE", "KILL", "SYS_CHROOT"}

// Options describe one appliance container.
type Options struct {
	Spec     string            // quietmx.yaml content ("" = none: environment only)
	Files    map[string]string // extra files in the spec directory (mounted at /etc/quietmx/appliance)
	Modes    map[string]os.FileMode
	Env      map[string]string
	Volumes  map[string]string // named volume → mount point, kept across containers
	Tmpfs    map[string]string
	Network  string
	Hostname string
	SpecDir  string // reuse a spec directory (restarts)
	// ClientLimits keeps port 25's per-client limits as the spec sets
	// them. Every connection from the host reaches the appliance from one
	// address (Docker's gateway), so by default Start lifts the limits
	// (hostLimits) and the suite's streams are not throttled; the tests of
	// the limits themselves set this.
	ClientLimits bool
	// Delivery is QUIETMX_DELIVERY ("": the spec's, else lmtp); see
	// forEachDelivery.
	Delivery string
	DNS      []netip.Addr // the container's DNS servers (e.g. the suite's TestDNS); Docker's when empty
}

// hostLimits lift port 25's per-client limits for the host's one address.
var hostLimits = map[string]string{
	"QUIETMX_SMTP_CONNECTIONS_PER_CLIENT": "20",
	"QUIETMX_SMTP_CONNECTION_RATE":        "0",
	"QUIETMX_SMTP_MESSAGE_RATE":           "0",
	"QUIETMX_SMTP_RECIPIENT_RATE":         "0",
}

// deliveryModes are the spec's delivery: values, the default first.
var deliveryModes = []string{"lmtp", "pipe"}

// forEachDelivery runs test once per delivery mode, as subtests named
// after the mode: a test of the promises (never a bounce, routing, faults)
// holds for both ways Postfix hands mail to the agent.
func forEachDelivery(t *testing.T, test func(t *testing.T, delivery string)) {
	for _, mode := range deliveryModes {
		t.Run(mode, func(t *testing.T) { test(t, mode) })
	}
}

// Appliance is a running container.
type Appliance struct {
	t        *testing.T
	C        testcontainers.Container
	SpecDir  string
	Hostname string
	SMTPAddr string
	IMAPAddr string
	opts     Options
}

const defaultHost = "mail.e2e.example"

// Start runs the appliance and waits until it says it is ready. The
// container is removed when the test ends, pass or fail.
func Start(t *testing.T, o Options) *Appliance {
	t.Helper()
	ctx := context.Background()
	if o.Hostname == "" {
		o.Hostname = defaultHost
	}
	dir := o.SpecDir
	if dir == "" {
		dir = t.TempDir()
		os.Chmod(dir, 0o755)
	}
	if o.Spec != "" {
		writeFile(t, filepath.Join(dir, "quietmx.yaml"), o.Spec, 0o644)
	}
	for name, content := range o.Files {
		mode := os.FileMode(0o644)
		if m, ok := o.Modes[name]; ok {
			mode = m
		}
		writeFile(t, filepath.Join(dir, name), content, mode)
	}
	// QUIETMX_SPEC must name a file that exists: only when the test gives one.
	env := map[string]string{}
	if _, ok := o.Files["quietmx.yaml"]; ok || o.Spec != "" {
		env["QUIETMX_SPEC"] = "/etc/quietmx/appliance/quietmx.yaml"
	}
	if o.Delivery != "" {
		env["QUIETMX_DELIVERY"] = o.Delivery
	}
	if !o.ClientLimits {
		for k, v := range hostLimits {
			env[k] = v
		}
	}
	for k, v := range o.Env {
		env[k] = v
	}
	req := testcontainers.ContainerRequest{
		Image:        Image,
		ExposedPorts: []string{"25/tcp", "993/tcp"},
		Env:          env,
		Hostname:     o.Hostname,
		Tmpfs:        o.Tmpfs,
		WaitingFor:   wait.ForLog("quietmx: ready").WithStartupTimeout(90 * time.Second),
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.CapDrop = []string{"ALL"}
			hc.CapAdd = capAdd
			hc.DNS = o.DNS
			hc.Binds = append(hc.Binds, dir+":/etc/quietmx/appliance:ro")
			for vol, target := range o.Volumes {
				hc.Binds = append(hc.Binds, vol+":"+target)
			}
		},
	}
	if o.Network != "" {
		req.Networks = []string{o.Network}
		// Its host name resolves on the network, as an MX's does (an ACME
		// CA there validates HTTP-01 against it).
		req.NetworkAliases = map[string][]string{o.Network: {o.Hostname}}
	}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
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
	a := &Appliance{t: t, C: c, SpecDir: dir, Hostname: o.Hostname, opts: o}
	a.SMTPAddr = a.addr("25/tcp")
	a.IMAPAddr = a.addr("993/tcp")
	return a
}

func (a *Appliance) addr(port string) string {
	a.t.Helper()
	ctx := context.Background()
	host, err := a.C.Host(ctx)
	if err != nil {
		a.t.Fatal(err)
	}
	p, err := a.C.MappedPort(ctx, port)
	if err != nil {
		a.t.Fatal(err)
	}
	return net.JoinHostPort(host, p.Port())
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
}

func dumpLogs(t *testing.T, c testcontainers.Container) {
	r, err := c.Logs(context.Background())
	if err != nil {
		return
	}
	data, _ := io.ReadAll(r)
	if len(data) > 64<<10 {
		data = data[len(data)-64<<10:]
	}
	t.Logf("container log (tail):\n%s", data)
}

// Logs returns the whole container log.
func (a *Appliance) Logs() string {
	r, err := a.C.Logs(context.Background())
	if err != nil {
		a.t.Fatal(err)
	}
	data, _ := io.ReadAll(r)
	return string(data)
}

// Exec runs a command in the container and returns its exit code and output.
func (a *Appliance) Exec(cmd ...string) (int, string) {
	a.t.Helper()
	code, r, err := a.C.Exec(context.Background(), cmd, tcexec.Multiplexed())
	if err != nil {
		a.t.Fatalf("exec %v: %v", cmd, err)
	}
	out, _ := io.ReadAll(r)
	return code, string(out)
}

// MustExec runs a command that must succeed.
func (a *Appliance) MustExec(cmd ...string) string {
	a.t.Helper()
	code, out := a.Exec(cmd...)
	if code != 0 {
		a.t.Fatalf("exec %v: exit %d: %s", cmd, code, out)
	}
	return out
}

// CertPool trusts the appliance's own (self-signed) certificate, so clients
// verify TLS for real instead of skipping verification.
func (a *Appliance) CertPool() *x509.CertPool {
	a.t.Helper()
	certPath := strings.TrimSpace(a.MustExec("postconf", "-h", "smtpd_tls_cert_file"))
	pem := a.MustExec("cat", certPath)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(pem)) {
		a.t.Fatalf("no certificate in %s", certPath)
	}
	return pool
}

func (a *Appliance) TLSConfig() *tls.Config {
	return &tls.Config{ServerName: a.Hostname, RootCAs: a.CertPool(), MinVersion: tls.VersionTLS12}
}

// helo is the name the suite's SMTP clients give in EHLO.
const helo = "client.e2e.example"

// Send delivers one message over SMTP from the host (harness.Send, the
// suite's one sender) and returns the first failing step's error.
func (a *Appliance) Send(from string, to []string, msg []byte) error {
	_, err := harness.Send(a.SMTPAddr, helo, from, to, msg)
	return err
}

// SendQueued is MustSend that returns the queue id Postfix gave the
// message.
func (a *Appliance) SendQueued(from string, to []string, msg []byte) string {
	a.t.Helper()
	reply, err := harness.Send(a.SMTPAddr, helo, from, to, msg)
	if err != nil {
		a.t.Fatalf("send %s → %v: %v", from, to, err)
	}
	id := harness.QueueID(reply)
	if id == "" {
		a.t.Fatalf("no queue id in the reply to the end of the data: %q", reply)
	}
	return id
}

// MustSend is Send that must succeed.
func (a *Appliance) MustSend(from string, to []string, msg []byte) {
	a.t.Helper()
	if err := a.Send(from, to, msg); err != nil {
		a.t.Fatalf("send %s → %v: %v", from, to, err)
	}
}

// IMAP logs in over IMAPS, verifying the certificate.
func (a *Appliance) IMAP(user, pass string) *imapclient.Client {
	a.t.Helper()
	c, err := imapclient.DialTLS(a.IMAPAddr, &imapclient.Options{TLSConfig: a.TLSConfig()})
	if err != nil {
		a.t.Fatalf("imaps dial: %v", err)
	}
	a.t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		a.t.Fatalf("imap login %s: %v", user, err)
	}
	return c
}

// waitFor is the suite's one wait (harness.Until): it polls cond until it
// holds and fails the test with what state says once within has passed.
// It waits on the event itself (a log line, the queue, a mailbox), never
// for a fixed time.
func waitFor(t *testing.T, within time.Duration, cond func() bool, state func() string) {
	t.Helper()
	if err := harness.Until(within, 200*time.Millisecond, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("%s (%v)", state(), err)
	}
}

// WaitMessages waits until the mailbox holds at least n messages and
// returns their full bodies (RFC822), oldest first.
func WaitMessages(t *testing.T, c *imapclient.Client, mailbox string, n int, within time.Duration) [][]byte {
	t.Helper()
	got := 0
	waitFor(t, within, func() bool {
		st, err := c.Status(mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			t.Fatalf("status %s: %v", mailbox, err)
		}
		if st.NumMessages != nil {
			got = int(*st.NumMessages)
		}
		return got >= n
	}, func() string { return fmt.Sprintf("mailbox %s: %d messages, want %d", mailbox, got, n) })
	return fetchAll(t, c, mailbox)
}

func fetchAll(t *testing.T, c *imapclient.Client, mailbox string) [][]byte {
	t.Helper()
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	// Leave nothing selected: Dovecot's STATUS on the selected mailbox
	// would not see new mail, and the next WaitMessages polls STATUS.
	defer func() { _ = c.Unselect().Wait() }()
	if sel.NumMessages == 0 {
		return nil
	}
	var seq imap.SeqSet
	seq.AddRange(1, sel.NumMessages)
	body := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(seq, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	if err != nil {
		t.Fatalf("fetch %s: %v", mailbox, err)
	}
	out := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, m.FindBodySection(body))
	}
	return out
}

// Message builds a small RFC 5322 message with CRLF line endings.
func Message(from, to, subject, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%d.%s>\r\nDate: %s\r\n\r\n%s\r\n",
		from, to, subject, time.Now().UnixNano(), from, time.Now().Format(time.RFC1123Z), body)
	return b.Bytes()
}

// Volume makes a named Docker volume removed at the end of the test.
func Volume(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("quietmx-e2e-%d", time.Now().UnixNano())
	if out, err := exec.Command("docker", "volume", "create", name).CombinedOutput(); err != nil {
		t.Fatalf("docker volume create: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "volume", "rm", "-f", name).Run() })
	return name
}
