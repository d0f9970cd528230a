package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"quietmx/internal/certs"
)

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {6, 32 * time.Minute}, {7, time.Hour}, {1000, time.Hour}} {
		if got := retryAfter(tc.n); got != tc.want {
			t.Errorf("retryAfter(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

// Outputs as certbot 2.1 (Debian bookworm) prints them.
func TestCertbotReason(t *testing.T) {
	for _, tc := range []struct {
		name, out, want string
	}{
		{"CA unreachable", `Saving debug log to /var/lib/quietmx/letsencrypt/logs/letsencrypt.log
An unexpected error occurred:
requests.exceptions.ConnectionError: HTTPSConnectionPool(host='nowhere.invalid', port=14000): Max retries exceeded with url: /dir (Caused by NameResolutionError("<urllib3.connection.HTTPSConnection object at 0x7f>: Failed to resolve 'nowhere.invalid' ([Errno -2] Name or service not known)"))
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile /var/lib/quietmx/letsencrypt/logs/letsencrypt.log or re-run Certbot with -v for more details.`,
			`requests.exceptions.ConnectionError: HTTPSConnectionPool(host='nowhere.invalid', port=14000): Max retries exceeded with url: /dir (Caused by NameResolutionError("<urllib3.connection.HTTPSConnection object at 0x7f>: Failed to resolve 'nowhere.invalid' ([Errno -2] Name or service not known)"))`},
		{"order refused", `Saving debug log to /var/lib/quietmx/letsencrypt/logs/letsencrypt.log
Requesting a certificate for refused.e2e.example
An unexpected error occurred:
Error creating new order :: Cannot issue for "refused.e2e.example": domain name is forbidden by policy
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile /var/lib/quietmx/letsencrypt/logs/letsencrypt.log or re-run Certbot with -v for more details.`,
			`Error creating new order :: Cannot issue for "refused.e2e.example": domain name is forbidden by policy`},
		{"renewal refused", `Saving debug log to /var/lib/quietmx/letsencrypt/logs/letsencrypt.log

- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Processing /var/lib/quietmx/letsencrypt/renewal/mail.example.com.conf
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Renewing an existing certificate for mail.example.com
Failed to renew certificate mail.example.com with error: Error creating new order :: refused

- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
All renewals failed. The following certificates could not be renewed:
  /var/lib/quietmx/letsencrypt/live/mail.example.com/fullchain.pem (failure)
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
1 renew failure(s), 0 parse failure(s)
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile /var/lib/quietmx/letsencrypt/logs/letsencrypt.log or re-run Certbot with -v for more details.`,
			`Failed to renew certificate mail.example.com with error: Error creating new order :: refused`},
		{"nothing useful", "Saving debug log to /x\n", "exit status 1"},
	} {
		if got := certbotReason(tc.out, errors.New("exit status 1")); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func TestACMEProblem(t *testing.T) {
	// As certbot logs a response (the problem Pebble sends for a name on
	// its block list).
	log := `2026-11-30 06:10:43,069:DEBUG:acme.client:Received response:
HTTP 400
Content-Type: application/problem+json

{
   "type": "urn:ietf:params:acme:error:rejectedIdentifier",
   "detail": "Order included an identifier for which issuance is forbidden by policy: \"mail.e2e.example\"",
   "status": 400
}
2026-11-30 06:10:43,070:DEBUG:certbot._internal.log:Exiting abnormally:
Traceback (most recent call last):
AttributeError: can't set attribute`
	want := `rejectedIdentifier: Order included an identifier for which issuance is forbidden by policy: "mail.e2e.example"`
	if got := acmeProblem(log); got != want {
		t.Errorf("acmeProblem = %q, want %q", got, want)
	}
	if got := acmeProblem("DEBUG:acme.client:Received response:\nHTTP 200\n{}"); got != "" {
		t.Errorf("acmeProblem without a problem = %q", got)
	}
}

// FuzzCertbotOutput: the parsers of certbot's output and log never panic
// and always say something.
func FuzzCertbotOutput(f *testing.F) {
	f.Add("Saving debug log to /x\nAn unexpected error occurred:\nError creating new order :: refused\n")
	f.Add(`{"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many \"certs\""}`)
	f.Add(`"type": "urn:ietf:params:acme:error:x", "detail": "\u00e9\"`)
	f.Fuzz(func(t *testing.T, out string) {
		if certbotReason(out, errors.New("exit status 1")) == "" {
			t.Error("empty reason")
		}
		if p := acmeProblem(out); p != "" && !strings.Contains(p, ": ") {
			t.Errorf("acmeProblem = %q, want TYPE: detail", p)
		}
	})
}

func TestACMEHandler(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, ".well-known", "acme-challenge")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tok-EN_1"), []byte("tok-EN_1.thumbprint"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "secret"), []byte("no"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logged []string
	h := acmeHandler(root, func(f string, a ...any) { logged = append(logged, f) })
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/.well-known/acme-challenge/tok-EN_1", 200, "tok-EN_1.thumbprint"},
		{"HEAD", "/.well-known/acme-challenge/tok-EN_1", 200, ""},
		{"GET", "/.well-known/acme-challenge/missing", 404, ""},
		{"GET", "/.well-known/acme-challenge/..%2fsecret", 404, ""},
		{"GET", "/.well-known/acme-challenge/", 404, ""},
		{"GET", "/secret", 404, ""},
		{"GET", "/", 404, ""},
		{"POST", "/.well-known/acme-challenge/tok-EN_1", 404, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code || (tc.body != "" && rec.Body.String() != tc.body) {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, rec.Code, rec.Body.String(), tc.code, tc.body)
		}
	}
	if len(logged) != 2 {
		t.Errorf("%d challenge log lines, want 2 (the GET and the HEAD answered)", len(logged))
	}
}

// testReaper is the test process's one reaper: two would steal each
// other's children (each waits for any child).
var testReaper = sync.OnceValue(func() *reaper {
	return newReaper(func(err error) { panic(err) }) // a reaper panic fails the test run loudly
})

// fakeCertbot makes a runner whose rendered certbot wrapper is script (a
// shell body; "$@" are certbot's arguments), with certbot's directory in a
// temporary one, serving a self-signed certificate, with the log in the
// returned buffer.
func fakeCertbot(t *testing.T, script string) (*certbotRunner, *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	var out bytes.Buffer
	var mu sync.Mutex
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&out, "quietmx: "+format+"\n", args...)
	}
	c := newCertbotRunner(testReaper().run, logf, live)
	c.dir = filepath.Join(dir, "letsencrypt")
	c.log = filepath.Join(c.dir, "logs", "letsencrypt.log")
	c.cert = filepath.Join(dir, "cert.pem")
	if err := os.MkdirAll(filepath.Dir(c.bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.bin, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.EnsureSelfSigned(c.cert, filepath.Join(dir, "key.pem"), "mail.example.com", time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.acme != nil {
			c.acme.Close()
		}
	})
	return c, &out
}

// useACME points the responder at a free local port and a temporary
// webroot for the test.
func useACME(t *testing.T, addr string) {
	t.Helper()
	oldAddr, oldRoot := acmeAddr, acmeWebroot
	acmeAddr, acmeWebroot = addr, t.TempDir()
	t.Cleanup(func() { acmeAddr, acmeWebroot = oldAddr, oldRoot })
}

func TestCertbotFailureBacksOffThenSucceeds(t *testing.T) {
	useACME(t, "127.0.0.1:0")
	calls := filepath.Join(t.TempDir(), "calls")
	s, out := fakeCertbot(t, `echo "$@" >> `+calls+`
if [ -e `+calls+`.ok ]; then echo "Successfully received certificate."; exit 0; fi
echo "Saving debug log to /var/lib/quietmx/letsencrypt/logs/letsencrypt.log"
echo "An unexpected error occurred:"
echo 'Error creating new order :: Cannot issue for "mail.example.com": domain name is forbidden by policy'
exit 1`)
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute} {
		if got := s.obtain("mail.example.com"); got != want {
			t.Errorf("failure %d: next run in %v, want %v", i+1, got, want)
		}
	}
	log := out.String()
	for _, want := range []string{
		`certbot certonly failed: Error creating new order :: Cannot issue for "mail.example.com": domain name is forbidden by policy; keeping the current certificate (mail.example.com issued by "mail.example.com", `,
		"(in 1m0s)",
		"(in 2m0s)",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if err := os.WriteFile(calls+".ok", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := s.obtain("mail.example.com"); got != RenewEvery || s.failures != 0 {
		t.Errorf("success: next run in %v with %d failures counted, want %v and 0", got, s.failures, RenewEvery)
	}
	if !strings.Contains(out.String(), "certbot certonly: ok in ") {
		t.Errorf("no success line:\n%s", out.String())
	}
	if data, _ := os.ReadFile(calls); string(data) != "certonly\ncertonly\ncertonly\n" {
		t.Errorf("the wrapper was called with %q, want certonly three times", data)
	}
	if s.acme == nil {
		t.Fatal("the HTTP-01 responder did not start")
	}
}

// TestCertbotReasonFromLog: when certbot's output hides the CA's answer,
// the failure line quotes the problem from this run's log.
func TestCertbotReasonFromLog(t *testing.T) {
	useACME(t, "127.0.0.1:0")
	s, out := fakeCertbot(t, `LOG="$(dirname "$0")/../../letsencrypt/logs/letsencrypt.log"
mkdir -p "$(dirname "$LOG")"; cat > "$LOG" <<'EOF'
{
   "type": "urn:ietf:params:acme:error:rejectedIdentifier",
   "detail": "mail.example.com is a forbidden domain"
}
EOF
echo "AttributeError: can't set attribute" >&2
exit 1`)
	s.obtain("mail.example.com")
	want := "certbot certonly failed: the CA answered rejectedIdentifier: mail.example.com is a forbidden domain (certbot: AttributeError: can't set attribute); keeping the current certificate"
	if !strings.Contains(out.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, out.String())
	}
}

// TestInstallLineage: after a successful run, certbot's certificate is
// installed through the deploy hook when another one is served (a restart
// that regenerated the self-signed one), and not again once it is.
func TestInstallLineage(t *testing.T) {
	useACME(t, "127.0.0.1:0")
	calls := filepath.Join(t.TempDir(), "calls")
	s, out := fakeCertbot(t, `echo "$@" >> `+calls)
	lineage := filepath.Join(s.dir, "live", "mail.example.com")
	if err := os.MkdirAll(lineage, 0o755); err != nil {
		t.Fatal(err)
	}
	// "certbot's" certificate: another self-signed one for the name.
	if _, err := certs.EnsureSelfSigned(filepath.Join(lineage, "fullchain.pem"), filepath.Join(lineage, "privkey.pem"), "mail.example.com", time.Now()); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\ncp \"$RENEWED_LINEAGE/fullchain.pem\" " + s.cert + "\n"
	if err := os.WriteFile(s.hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	want, _ := certs.Read(filepath.Join(lineage, "fullchain.pem"))
	for i := 0; i < 2; i++ {
		if got := s.obtain("mail.example.com"); got != RenewEvery {
			t.Fatalf("run %d: next in %v", i+1, got)
		}
	}
	if served, _ := certs.Read(s.cert); served.Fingerprint != want.Fingerprint {
		t.Errorf("serving %s, want certbot's %s", served.Fingerprint, want.Fingerprint)
	}
	if n := strings.Count(out.String(), "installed certbot's current certificate"); n != 1 {
		t.Errorf("installed %d times, want once:\n%s", n, out.String())
	}
	if data, _ := os.ReadFile(calls); string(data) != "renew\nrenew\n" {
		t.Errorf("certbot called with %q, want renew twice (the lineage exists)", data)
	}
}

// TestPort80Taken: a taken port is said at start and at each attempt,
// which then does not run certbot at all.
func TestPort80Taken(t *testing.T) {
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	useACME(t, squatter.Addr().String())
	calls := filepath.Join(t.TempDir(), "calls")
	s, out := fakeCertbot(t, `echo "$@" >> `+calls)
	s.startACME()
	if got := s.obtain("mail.example.com"); got != RetryFirst {
		t.Errorf("next run in %v, want %v", got, RetryFirst)
	}
	log := out.String()
	if !strings.Contains(log, "ERROR: certbot mode: port 80 is taken by another process") ||
		!strings.Contains(log, "certbot certonly failed: port 80 is taken by another process") {
		t.Errorf("the log does not say port 80 is taken, at start and at the attempt:\n%s", log)
	}
	if _, err := os.Stat(calls); err == nil {
		t.Error("certbot ran although nothing can answer the challenge")
	}
	// Once the port is free, the next attempt binds it.
	squatter.Close()
	if got := s.obtain("mail.example.com"); got != RenewEvery || s.acme == nil {
		t.Errorf("after the port was freed: next run in %v, responder %v", got, s.acme != nil)
	} else {
		resp, err := http.Get("http://" + acmeAddr + "/")
		if err != nil || resp.StatusCode != 404 {
			t.Errorf("responder: %v %v", resp, err)
		}
	}
}
