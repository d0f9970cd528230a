package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"quietmx/internal/certs"
	"quietmx/internal/render"
	"quietmx/internal/spec"
)

// Certbot mode. certbot runs through the rendered wrapper (render.CertbotBin,
// which /usr/local/bin/certbot links to), so the scheduled renewal and a
// `certbot renew` typed in the container run the same command with the
// same configuration and CA bundle. The HTTP-01 challenge is answered by
// quietmx run itself on port 80 from certbot's webroot: port 80 is bound
// once, at start, and a conflict is reported then instead of at each
// certbot run.

// Renewal schedule: after a success, look again in RenewEvery (certbot
// renews only when the certificate is due); after failures, back off from
// RetryFirst, doubling, up to RetryMax, so a CA that was down at first
// start is tried again within minutes.
const (
	RenewEvery = 12 * time.Hour
	RetryFirst = time.Minute
	RetryMax   = time.Hour
)

// Where the HTTP-01 responder listens and what it serves (tests change
// them).
var (
	acmeAddr    = ":80"
	acmeWebroot = spec.ACMEWebroot
)

// certbotRunner runs certbot for one appliance. It needs nothing from the
// Supervisor but a way to run commands and to log, so a renewal goroutine
// can own it: only that goroutine may call obtain.
type certbotRunner struct {
	run      func(name string, args ...string) (string, error)
	logf     func(format string, args ...any)
	bin      string // the rendered wrapper, through the live tree
	hook     string // the rendered deploy hook, through the live tree
	dir      string // certbot's config-dir
	log      string // certbot's log, rotated at each run
	cert     string // the certificate Postfix and Dovecot serve
	acme     *http.Server
	failures int // failed runs in a row
}

func newCertbotRunner(run func(string, ...string) (string, error), logf func(string, ...any), live string) *certbotRunner {
	return &certbotRunner{
		run: run, logf: logf,
		bin:  filepath.Join(live, render.CertbotBin),
		hook: filepath.Join(live, render.DeployHook),
		dir:  spec.CertbotDir,
		log:  filepath.Join(spec.CertbotDir, "logs", "letsencrypt.log"),
		cert: spec.DefaultCert, // certbot mode always serves this one
	}
}

// challengePath is the URL prefix of HTTP-01 (RFC 8555 8.3).
const challengePath = "/.well-known/acme-challenge/"

// tokenRE is RFC 8555's token alphabet (base64url); anything else is not a
// challenge and must not become a file name.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

// acmeHandler answers HTTP-01 challenges from webroot (where certbot's
// webroot authenticator writes .well-known/acme-challenge/TOKEN) and
// nothing else.
func acmeHandler(webroot string, logf func(string, ...any)) http.Handler {
	dir := filepath.Join(webroot, filepath.FromSlash(challengePath))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, challengePath)
		if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) || !tokenRE.MatchString(token) {
			http.NotFound(w, r)
			return
		}
		data, err := os.ReadFile(filepath.Join(dir, token))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(data)
		logf("ACME HTTP-01 challenge answered for %s", r.RemoteAddr)
	})
}

// listenACME binds port 80 and serves HTTP-01 challenges from
// acmeWebroot until the process ends. It is called at start in
// certbot mode and again before a certbot run while it has not succeeded.
func (c *certbotRunner) listenACME() error {
	if c.acme != nil {
		return nil
	}
	dir := filepath.Join(acmeWebroot, filepath.FromSlash(challengePath))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("webroot: %w", err)
	}
	ln, err := net.Listen("tcp", acmeAddr)
	if err != nil {
		return err
	}
	c.acme = &http.Server{
		Handler:           acmeHandler(acmeWebroot, c.logf),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
	srv := c.acme
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// startACME binds port 80 at start in certbot mode. A failure does not stop
// the appliance (mail flows on the current certificate); it is said loudly,
// once here and again at each certbot attempt.
func (c *certbotRunner) startACME() {
	if err := c.listenACME(); err != nil {
		c.logf("ERROR: certbot mode: %s", port80Problem(err))
		return
	}
	c.logf("certbot mode: answering ACME HTTP-01 challenges on port 80 (webroot %s)", spec.ACMEWebroot)
}

func port80Problem(err error) string {
	why := "cannot listen on port 80"
	if errors.Is(err, syscall.EADDRINUSE) {
		why = "port 80 is taken by another process in the container's network namespace"
	}
	return fmt.Sprintf("%s (%v): the CA cannot reach the HTTP-01 challenge, so no certificate can be issued; mail keeps flowing on the current certificate. Free port 80 (with network_mode: host, a web server on the host holds it) or use tls.mode files", why, err)
}

// obtain gets the first certificate for hostname or renews it, through
// the rendered wrapper, and returns how long to wait before the next run.
// A failure keeps the current certificate and says why and when it
// retries.
func (c *certbotRunner) obtain(hostname string) time.Duration {
	lineage := filepath.Join(c.dir, "live", hostname)
	cmd := "certonly"
	if _, err := os.Stat(lineage); err == nil {
		cmd = "renew"
	}
	fail := func(why string) time.Duration {
		c.failures++
		wait := retryAfter(c.failures)
		c.logf("certbot %s failed: %s; keeping the current certificate (%s), next attempt at %s (in %v)",
			cmd, why, certSummary(c.cert), time.Now().Add(wait).UTC().Format("15:04:05 MST"), wait)
		return wait
	}
	if err := c.listenACME(); err != nil {
		return fail(port80Problem(err))
	}
	t0 := time.Now()
	out, err := c.run(c.bin, cmd)
	if err != nil {
		why := certbotReason(out, err)
		// certbot 2.1 cannot parse some problem documents (subproblems)
		// and then prints only its own traceback: the CA's answer is in
		// the run's log.
		if st, serr := os.Stat(c.log); serr == nil && !st.ModTime().Before(t0) {
			log, _ := os.ReadFile(c.log)
			if p := acmeProblem(string(log)); p != "" {
				why = "the CA answered " + p + " (certbot: " + why + ")"
			}
		}
		return fail(why)
	}
	c.failures = 0
	c.installLineage(lineage)
	c.logf("certbot %s: ok in %v; serving %s", cmd, time.Since(t0).Round(time.Millisecond), certSummary(c.cert))
	return RenewEvery
}

// installLineage runs the deploy hook for certbot's current certificate
// when another one is served and certbot's is still valid. certbot runs
// the hook only when it issues, so without this a certificate file lost
// or replaced by the self-signed one at start (it is regenerated when
// missing, or within 30 days of expiry) would be served until the next
// renewal, for up to 60 days.
func (c *certbotRunner) installLineage(lineage string) {
	issued, err := certs.Read(filepath.Join(lineage, "fullchain.pem"))
	if err != nil || !time.Now().Before(issued.NotAfter) {
		return
	}
	if served, err := certs.Read(c.cert); err == nil && served.Fingerprint == issued.Fingerprint {
		return
	}
	if out, err := c.run("env", "RENEWED_LINEAGE="+lineage, c.hook); err != nil {
		c.logf("warning: installing certbot's certificate from %s failed: %v", lineage, certbotReason(out, err))
		return
	}
	c.logf("installed certbot's current certificate from %s (another one was being served)", lineage)
}

// retryAfter is the wait after the n-th failure in a row (n ≥ 1).
func retryAfter(n int) time.Duration {
	d := RetryFirst
	for i := 1; i < n && d < RetryMax; i++ {
		d *= 2
	}
	return min(d, RetryMax)
}

// certSummary names the certificate in certFile, for log lines.
func certSummary(certFile string) string {
	info, err := certs.Read(certFile)
	if err != nil {
		return fmt.Sprintf("unreadable: %v", err)
	}
	return fmt.Sprintf("%s issued by %q, %d days left, sha256 %s",
		strings.Join(info.DNSNames, ","), info.Issuer, certs.DaysLeft(info, time.Now()), info.Fingerprint)
}

// certbotNoise are certbot's lines that never say what went wrong.
var certbotNoise = []string{
	"Saving debug log to",
	"Ask for help or search for solutions",
	"See the logfile",
	"An unexpected error occurred:",
	"Requesting a certificate for",
	"Renewing an existing certificate",
	"Processing ",
	"- - - -",
	"All renewals failed",
	"The following certificates could not be renewed",
	"(failure)",
	"certbot renew failed",
	"Some challenges have failed",
	"Certbot failed to authenticate some domains",
	"Hint: ",
	"renew failure(s)",
	"Account registered.",
}

// problemRE finds an RFC 8555 problem document (RFC 7807 JSON) as certbot
// logs the CA's responses.
var problemRE = regexp.MustCompile(`"type":\s*"urn:ietf:params:acme:error:([A-Za-z]+)",\s*"detail":\s*("(?:[^"\\]|\\.)*")`)

// acmeProblem returns the last problem the CA sent in a certbot log, as
// "TYPE: detail", or "".
func acmeProblem(log string) string {
	m := problemRE.FindAllStringSubmatch(log, -1)
	if len(m) == 0 {
		return ""
	}
	last := m[len(m)-1]
	var detail string
	if err := json.Unmarshal([]byte(last[2]), &detail); err != nil {
		detail = last[2]
	}
	return last[1] + ": " + detail
}

// certbotReason boils certbot's output down to the lines that say what
// went wrong, on one line.
func certbotReason(out string, err error) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		noise := line == ""
		for _, n := range certbotNoise {
			noise = noise || strings.Contains(line, n)
		}
		if !noise {
			keep = append(keep, line)
		}
	}
	if len(keep) == 0 {
		return err.Error()
	}
	why := strings.Join(keep, " | ")
	if len(why) > 600 {
		why = strings.ToValidUTF8(why[:600], "") + "…"
	}
	return why
}
