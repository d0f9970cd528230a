package render

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"quietmx/internal/delivery"
	"quietmx/internal/passwd"
	"quietmx/internal/policy"
	"quietmx/internal/rules"
	"quietmx/internal/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// zeros is a reproducible salt source, so hashes in golden files are stable.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// The fake secrets the examples' /run/secrets/... paths are replaced by.
var (
	mePassword   = mustSecret("testdata/secrets/me_password")
	smtpPassword = mustSecret("testdata/secrets/smtp_password")
)

func mustSecret(p string) string {
	data, err := os.ReadFile(p)
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(data))
}

func abs(t testing.TB, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// exampleCase is one appliance/ example: a spec file and an environment.
type exampleCase struct {
	name     string
	spec     string
	envFile  string
	delivery string // overrides the spec's delivery mode
}

var examples = []exampleCase{
	{"single-domain", "../../appliance/examples/single-domain.yaml", "", ""},
	{"many-domains", "../../appliance/examples/many-domains.yaml", "", ""},
	{"certbot", "../../appliance/examples/certbot.yaml", "", ""},
	{"files", "../../appliance/examples/files.yaml", "", ""},
	{"env-only", "../../appliance/quietmx.yaml", "../../appliance/examples/env-only.env", ""},
	{"single-domain-pipe", "../../appliance/examples/single-domain.yaml", "", spec.DeliveryPipe},
	{"certbot-private-ca", "../../appliance/examples/certbot-private-ca.yaml", "", ""},
}

// readEnvFile reads KEY=VALUE lines (comments and blank lines skipped).
func readEnvFile(t testing.TB, p string) map[string]string {
	env := map[string]string{}
	if p == "" {
		return env
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: bad line %q", p, line)
		}
		env[k] = v
	}
	return env
}

// load reads an example with its /run/secrets paths redirected to the
// fake secrets in testdata.
func (c exampleCase) load(t testing.TB) *spec.Spec {
	env := readEnvFile(t, c.envFile)
	if _, ok := env["QUIETMX_PASSWORD_FILE"]; ok {
		env["QUIETMX_PASSWORD_FILE"] = abs(t, "testdata/secrets/me_password")
	}
	if c.name == "many-domains" {
		env["QUIETMX_RELAY_PASSWORD_FILE"] = abs(t, "testdata/secrets/smtp_password")
	}
	if c.name == "certbot-private-ca" {
		env["QUIETMX_CERTBOT_CA_FILE"] = abs(t, "testdata/secrets/acme-ca.pem")
	}
	s, err := spec.LoadFile(c.spec, env)
	if err != nil {
		t.Fatalf("spec.LoadFile(%s): %v", c.spec, err)
	}
	if len(s.Warnings) > 0 {
		t.Errorf("%s: unexpected warnings:\n%s", c.spec, strings.Join(s.Warnings, "\n"))
	}
	if c.delivery != "" {
		s.Delivery = c.delivery
	}
	return s
}

// cheap argon2 costs, where the hash itself is not under test (the real
// ones take seconds under -race).
var cheap = passwd.Params{Memory: 64, Time: 1, Threads: 1}

// render renders the example with reproducible salts; params zero means
// the real argon2 costs.
func (c exampleCase) render(t testing.TB, params passwd.Params) string {
	s := c.load(t)
	out := filepath.Join(t.TempDir(), "tree")
	if err := RenderWith(s, out, Options{Rand: zeros{}, Params: params}); err != nil {
		t.Fatalf("Render: %v", err)
	}
	return out
}

// tree reads a rendered tree: relative path -> content, plus a MODES
// listing. Compiled rule files are binary and not byte-stable; they are
// checked by loading instead.
func tree(t testing.TB, root string) map[string][]byte {
	files := map[string][]byte{}
	var modes []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		modes = append(modes, fmt.Sprintf("%04o %s", info.Mode().Perm(), rel))
		if strings.HasSuffix(rel, ".compiled") {
			return nil
		}
		files[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(modes)
	files["MODES"] = []byte(strings.Join(modes, "\n") + "\n")
	return files
}

// TestGolden renders every appliance/ example and compares each file with
// testdata/<example>/. Run with -update to rewrite them; review the diff.
func TestGolden(t *testing.T) {
	for _, c := range examples {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out := c.render(t, passwd.Params{})
			got := tree(t, out)
			dir := filepath.Join("testdata", c.name)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				for rel, data := range got {
					p := filepath.Join(dir, rel)
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			want := tree(t, dir)
			delete(want, "MODES")
			want["MODES"], _ = os.ReadFile(filepath.Join(dir, "MODES"))
			for rel, w := range want {
				g, ok := got[rel]
				if !ok {
					t.Errorf("%s: not rendered (golden %s exists)", rel, filepath.Join(dir, rel))
					continue
				}
				if !bytes.Equal(g, w) {
					t.Errorf("%s differs from %s (run go test -update and review):\n%s", rel, filepath.Join(dir, rel), lineDiff(w, g))
				}
			}
			for rel := range got {
				if _, ok := want[rel]; !ok {
					t.Errorf("%s: rendered but has no golden file (run go test -update)", rel)
				}
			}
			// The compiled form is the one the agent will load.
			loaded, err := rules.Load(filepath.Join(out, RulesFile))
			if err != nil || !loaded.Compiled || loaded.Stale {
				t.Errorf("rules.Load(rendered) = compiled %v, stale %v, err %v; want the compiled form", loaded.Compiled, loaded.Stale, err)
			}
		})
	}
}

// lineDiff shows the first differing lines of two files.
func lineDiff(want, got []byte) string {
	w := strings.Split(string(want), "\n")
	g := strings.Split(string(got), "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n-%s\n+%s\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}

// TestRealTools feeds every rendered example to the real postconf and
// doveconf, and fails on any warning. `postfix check` (a second, mostly
// about queue permissions) runs on many-domains only: master.cf is the
// same in every example, and many-domains' main.cf is the superset (smarthost,
// SASL map). The tools come from internal/render/install-tools.sh; a
// missing tool is a failure.
func TestRealTools(t *testing.T) {
	for _, name := range []string{"postconf", "postfix", "doveconf"} {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%s not found: run internal/render/install-tools.sh (make test does)", name)
		}
	}
	for _, c := range examples {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out := c.render(t, cheap) // dated back by RenderWith
			if err := Verify(out); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.name == "many-domains" {
				postfixCheck(t, out)
			}
			nullSenderDiscarded(t, out)
			policyService(t, out)
			if c.delivery == spec.DeliveryPipe {
				agentServiceArgs(t, out)
			} else {
				agentLMTPService(t, out)
			}
		})
	}
}

// policyService reads the recipient restrictions back through the real
// postconf: after the relay check, the agent's policy service, whose
// failure (down, stuck past the timeout) is DUNNO, never the default 451
// for every recipient.
func policyService(t *testing.T, out string) {
	t.Helper()
	pf := filepath.Join(out, "postfix")
	for param, want := range map[string]string{
		"smtpd_relay_restrictions":     "reject_unauth_destination",
		"smtpd_recipient_restrictions": "check_policy_service { unix:" + policy.DefaultSocket + ", timeout=10s, default_action=DUNNO }",
	} {
		got, err := exec.Command("postconf", "-c", pf, "-h", param).CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("postconf -h %s: %v %q, want %q", param, err, got, want)
		}
	}
}

// agentServiceArgs reads the agent's master.cf entry back through the real
// postconf: soft_bounce must be a service option (postconf -P), and argv=
// must end with the one recipient. An -o written after argv= is no option
// at all: pipe(8) passes it to the agent as more recipients.
func agentServiceArgs(t *testing.T, out string) {
	t.Helper()
	pf := filepath.Join(out, "postfix")
	got, err := exec.Command("postconf", "-c", pf, "-P", "altpostlocal/unix/soft_bounce").CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != "altpostlocal/unix/soft_bounce = yes" {
		t.Errorf("postconf -P altpostlocal/unix/soft_bounce: %v %q", err, got)
	}
	got, err = exec.Command("postconf", "-c", pf, "-M", "altpostlocal/unix").Output()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(got)), "-- ${recipient}") {
		t.Errorf("postconf -M altpostlocal/unix: argv must end with \"-- ${recipient}\": %v %q", err, got)
	}
}

// agentLMTPService reads the LMTP client's master.cf entry and the
// transport back through the real postconf: local mail goes to the
// daemon's socket, and the service defers what the daemon would bounce.
func agentLMTPService(t *testing.T, out string) {
	t.Helper()
	pf := filepath.Join(out, "postfix")
	for param, want := range map[string]string{
		"altpostlocal-lmtp/unix/soft_bounce":                "yes",
		"altpostlocal-lmtp/unix/lmtp_discard_lhlo_keywords": "silent-discard,size",
		"altpostlocal-lmtp/unix/lmtp_data_done_timeout":     AgentTimeLimit,
	} {
		got, err := exec.Command("postconf", "-c", pf, "-P", param).CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != param+" = "+want {
			t.Errorf("postconf -P %s: %v %q, want %q", param, err, got, want)
		}
	}
	got, err := exec.Command("postconf", "-c", pf, "-h", "local_transport").Output()
	if want := "altpostlocal-lmtp:unix:" + delivery.DefaultSocket; err != nil || strings.TrimSpace(string(got)) != want {
		t.Errorf("local_transport = %q (%v), want %q", got, err, want)
	}
	if got, _ := exec.Command("postconf", "-c", pf, "-M", "altpostlocal/unix").Output(); len(got) > 0 {
		t.Errorf("the pipe service is rendered in lmtp mode: %s", got)
	}
}

// nullSenderDiscarded queries the rendered null-sender transport map with
// the real postmap: postconf accepts any map text, and a malformed inline:
// table only fails at lookup time, in trivial-rewrite, which then answers
// every RCPT for a remote address (relay attempts included) with 451
// "Temporary lookup failure" instead of 554.
func nullSenderDiscarded(t *testing.T, out string) {
	t.Helper()
	pf := filepath.Join(out, "postfix")
	m, err := exec.Command("postconf", "-c", pf, "-h", "sender_dependent_default_transport_maps").Output()
	if err != nil {
		t.Fatalf("postconf: %v", err)
	}
	table := strings.TrimSpace(string(m))
	for key, want := range map[string]string{"<>": "discard:", "someone@example.org": ""} {
		var stderr bytes.Buffer
		cmd := exec.Command("postmap", "-c", pf, "-q", key, table)
		cmd.Stderr = &stderr
		got, err := cmd.Output()
		if stderr.Len() > 0 {
			t.Errorf("postmap -q %q %q: %s", key, table, stderr.Bytes())
		}
		if got := strings.TrimSpace(string(got)); got != want {
			t.Errorf("postmap -q %q %q = %q (%v), want %q", key, table, got, err, want)
		}
	}
}

// postfixCheck runs `postfix -c DIR check` on a copy of the rendered
// postfix/ whose queue and data directories are temporary ones, so the
// host's queue is never touched. It needs root (postfix check chowns the
// queue), which the test container has.
func postfixCheck(t *testing.T, out string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("postfix check needs root (it creates and chowns the queue directories)")
	}
	tmp := t.TempDir()
	conf := filepath.Join(tmp, "postfix")
	queue := filepath.Join(tmp, "queue")
	data := filepath.Join(tmp, "data")
	for _, d := range []string{conf, queue, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The tmp dir is 0700; postfix's own checks walk down from it.
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "postfix", data).CombinedOutput(); err != nil {
		t.Fatalf("chown postfix %s: %v\n%s", data, err, out)
	}
	for _, f := range []string{"main.cf", "master.cf"} {
		b, err := os.ReadFile(filepath.Join(out, "postfix", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "main.cf" {
			b = fmt.Appendf(b, "\n# test only\nqueue_directory = %s\ndata_directory = %s\n", queue, data)
		}
		if err := os.WriteFile(filepath.Join(conf, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	backdate(conf)
	cmd := exec.Command("postfix", "-c", conf, "check")
	got, err := cmd.CombinedOutput()
	if err != nil || len(got) > 0 {
		t.Fatalf("postfix -c %s check: %v\n%s", conf, err, got)
	}
}

// TestPasswordFileHashed: a password_file is hashed at render time, the
// hash verifies, and no plaintext mailbox password is in any rendered
// file. The smarthost password may only be in postfix/sasl_passwd (0600).
func TestPasswordFileHashed(t *testing.T) {
	for _, c := range []exampleCase{examples[4], examples[1]} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "tree")
			if err := Render(c.load(t), out); err != nil { // real crypto/rand salt
				t.Fatal(err)
			}
			err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(out, p)
				if bytes.Contains(data, []byte(mePassword)) {
					t.Errorf("%s contains the plaintext mailbox password", rel)
				}
				if bytes.Contains(data, []byte(smtpPassword)) && rel != SASLPasswd {
					t.Errorf("%s contains the plaintext smarthost password", rel)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if c.name != "env-only" {
				info, err := os.Stat(filepath.Join(out, SASLPasswd))
				if err != nil || info.Mode().Perm() != 0o600 {
					t.Fatalf("%s: %v, mode %v; want 0600", SASLPasswd, err, info.Mode().Perm())
				}
				return
			}
			hash := passwdHash(t, out, "me@example.com")
			if !strings.HasPrefix(hash, "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$") {
				t.Fatalf("rendered hash %q, want {ARGON2ID} with doveadm's parameters", hash)
			}
			if doveadm, err := exec.LookPath("doveadm"); err == nil {
				if out, err := exec.Command(doveadm, "pw", "-t", hash, "-p", mePassword).CombinedOutput(); err != nil {
					t.Fatalf("doveadm pw -t %s: %v\n%s", hash, err, out)
				}
			} else {
				t.Fatal("doveadm not found: run internal/render/install-tools.sh")
			}
		})
	}
}

func passwdHash(t *testing.T, tree, login string) string {
	data, err := os.ReadFile(filepath.Join(tree, PasswdFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Split(line, ":"); len(f) > 2 && f[0] == login {
			return f[1]
		}
	}
	t.Fatalf("%s: no line for %s", PasswdFile, login)
	return ""
}

// TestPreviousHashKept: re-rendering with an unchanged password keeps the
// hash (so the passwd-file does not change); a new password gets a new one.
func TestPreviousHashKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "pw")
	os.WriteFile(secret, []byte("first password\n"), 0o600)
	env := map[string]string{
		"QUIETMX_HOSTNAME": "mail.example.com", "QUIETMX_DOMAINS": "example.com",
		"QUIETMX_MAILBOX": "me@example.com", "QUIETMX_PASSWORD_FILE": secret,
	}
	render := func(name, previous string) string {
		s, err := spec.Load("", nil, env)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, name)
		if err := RenderWith(s, out, Options{Previous: previous, Params: cheap}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	v1 := render("v1", "")
	v2 := render("v2", v1)
	if changed, err := Diff(v1, v2); err != nil || len(changed) != 0 {
		t.Fatalf("Diff(same password) = %v, %v; want nothing changed", changed, err)
	}
	os.WriteFile(secret, []byte("second password\n"), 0o600)
	v3 := render("v3", v2)
	changed, err := Diff(v2, v3)
	if err != nil || !slices.Equal(changed, []string{PasswdFile}) {
		t.Fatalf("Diff(new password) = %v, %v; want [%s]", changed, err, PasswdFile)
	}
	if ok, _ := passwd.Verify(passwdHash(t, v3, "me@example.com"), []byte("second password")); !ok {
		t.Fatal("the new hash does not verify the new password")
	}
}

func minimalSpec(t *testing.T, env map[string]string) *spec.Spec {
	t.Helper()
	base := map[string]string{
		"QUIETMX_HOSTNAME": "mail.example.com", "QUIETMX_DOMAINS": "example.com",
		"QUIETMX_MAILBOX":       "me@example.com",
		"QUIETMX_PASSWORD_HASH": "{SHA512-CRYPT}$6$4bAowgfggBr85FSu$A9PM3uNhN0WsrY.1PrmmOXAcMqW3gjS63YHaVA7YdERz3dpVx8kmTu1vJMvBdWoEzCuo6iCE9QfK8lA7Cido11",
	}
	for k, v := range env {
		base[k] = v
	}
	s, err := spec.Load("", nil, base)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDiffReloads: what changed between two renders decides the reloads.
func TestDiffReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	renderTo := func(name string, env map[string]string) string {
		out := filepath.Join(dir, name)
		if err := Render(minimalSpec(t, env), out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	base := renderTo("base", nil)
	for _, tc := range []struct {
		name             string
		env              map[string]string
		want             []string
		postfix, dovecot bool
	}{
		{"same", nil, nil, false, false},
		{"message size", map[string]string{"QUIETMX_MESSAGE_SIZE": "10M"}, []string{MainCF}, true, false},
		{"ipv6", map[string]string{"QUIETMX_IPV6": "true"}, []string{DovecotConf, MainCF}, true, true},
		{"second domain", map[string]string{"QUIETMX_DOMAINS": "example.com,example.org"}, []string{MainCF}, true, false},
		{"maildir", map[string]string{"QUIETMX_MAILDIR": "/var/mail/vmail/me/Maildir"},
			[]string{RulesFile, RulesFile + ".compiled", RulesFile + ".last-valid", PasswdFile}, false, false},
		{"certbot", map[string]string{"QUIETMX_TLS_MODE": "certbot", "QUIETMX_CERTBOT_EMAIL": "me@example.com"},
			[]string{CertbotBin, CertbotINI, DeployHook}, false, false},
		{"auth", map[string]string{"QUIETMX_AUTH_DMARC": "true"}, []string{AuthFile}, false, false},
	} {
		out := renderTo(strings.ReplaceAll(tc.name, " ", "-"), tc.env)
		changed, err := Diff(base, out)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(changed, tc.want) {
			t.Errorf("%s: Diff = %q, want %q", tc.name, changed, tc.want)
		}
		if p, d := Reloads(changed); p != tc.postfix || d != tc.dovecot {
			t.Errorf("%s: Reloads = postfix %v, dovecot %v; want %v, %v", tc.name, p, d, tc.postfix, tc.dovecot)
		}
	}
	// A tree that never existed counts as empty.
	changed, err := Diff(filepath.Join(dir, "nowhere"), base)
	if err != nil || len(changed) != 8 {
		t.Errorf("Diff(missing, base) = %q, %v; want all 8 files", changed, err)
	}
}

func TestSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	s := minimalSpec(t, nil)
	for i, name := range []string{"v1", "v2"} {
		out := filepath.Join(dir, name)
		if err := Render(s, out); err != nil {
			t.Fatal(err)
		}
		if err := Swap(out, live); err != nil {
			t.Fatalf("Swap #%d: %v", i+1, err)
		}
		target, err := os.Readlink(live)
		if err != nil || target != name {
			t.Fatalf("after Swap #%d: live -> %q, %v; want %q (relative)", i+1, target, err, name)
		}
		if _, err := os.Stat(filepath.Join(live, MainCF)); err != nil {
			t.Fatalf("through live: %v", err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("dir holds %d entries, want v1, v2, live (no temporary links left)", len(entries))
	}
	// A real directory at live is never replaced.
	realDir := filepath.Join(dir, "real")
	os.Mkdir(realDir, 0o755)
	if err := Swap(filepath.Join(dir, "v1"), realDir); err == nil || !strings.Contains(err.Error(), "is not a symlink") {
		t.Errorf("Swap over a directory: err = %v, want refusal", err)
	}
}

func TestRenderNeedsFreshDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "old"), nil, 0o644)
	err := Render(minimalSpec(t, nil), dir)
	if err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("Render into a non-empty dir: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, MainCF)); err == nil {
		t.Fatal("Render wrote into a non-empty directory")
	}
}

// TestRenderNothingOnError: a password file that vanished after Load
// makes Render fail before the output directory is even created.
func TestRenderNothingOnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "pw")
	os.WriteFile(secret, []byte("pw\n"), 0o600)
	s, err := spec.Load("", nil, map[string]string{
		"QUIETMX_HOSTNAME": "mail.example.com", "QUIETMX_DOMAINS": "example.com",
		"QUIETMX_MAILBOX": "me@example.com", "QUIETMX_PASSWORD_FILE": secret,
	})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(secret)
	out := filepath.Join(dir, "out")
	if err := Render(s, out); err == nil {
		t.Fatal("Render succeeded without the password file")
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("Render created the output directory despite failing")
	}
}

// TestRenderLeavesNothingOnFailure: a failure after the tree was started
// (here the rule file, refused by its own install) removes everything:
// neither outDir nor a temporary directory next to it remains.
func TestRenderLeavesNothingOnFailure(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"absent", "empty"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			if name == "empty" {
				if err := os.Mkdir(out, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			s := minimalSpec(t, nil)
			s.Rules.Data = []byte("default: {type: maildri}\n")
			err := RenderWith(s, out, Options{Params: cheap})
			if err == nil || !strings.Contains(err.Error(), RulesFile) {
				t.Fatalf("RenderWith with a broken rule file: err = %v", err)
			}
			entries, _ := os.ReadDir(dir)
			want := 0
			if name == "empty" {
				want = 1 // the empty directory the caller made, untouched
			}
			if len(entries) != want {
				t.Errorf("%s holds %d entries after a failed render, want %d", dir, len(entries), want)
			}
			if left, _ := os.ReadDir(out); len(left) > 0 {
				t.Errorf("%s holds %d entries after a failed render", out, len(left))
			}
		})
	}
}

// TestRenderWithoutOwnership: by default (quietmx render --out) no file's
// owner is looked up or changed, so the tree renders on a machine without
// a dovecot group, and into an existing empty directory.
func TestRenderWithoutOwnership(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := RenderWith(minimalSpec(t, nil), out, Options{Params: cheap}); err != nil {
		t.Fatalf("RenderWith: %v", err)
	}
	st, err := os.Stat(filepath.Join(out, PasswdFile))
	if err != nil {
		t.Fatal(err)
	}
	if gid := st.Sys().(*syscall.Stat_t).Gid; int(gid) != os.Getegid() {
		t.Errorf("%s has gid %d, want the process's %d (no ownership outside the live tree)", PasswdFile, gid, os.Getegid())
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o755 {
		t.Errorf("tree mode %v, want 0755", st.Mode().Perm())
	}
}

// TestWriteFileOwnership: with ownership, a group the machine lacks is a
// clear error that leaves no file; without, the group is never needed.
func TestWriteFileOwnership(t *testing.T) {
	t.Parallel()
	f := File{Path: "dovecot/passwd", Data: []byte("x\n"), Mode: 0o640, Group: "quietmx-no-such-group"}
	root := t.TempDir()
	err := writeFile(root, f, true)
	if err == nil || !strings.Contains(err.Error(), "group quietmx-no-such-group") {
		t.Fatalf("writeFile with a missing group: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, f.Path)); err == nil {
		t.Error("writeFile left the file despite failing")
	}
	if err := writeFile(root, f, false); err != nil {
		t.Fatalf("writeFile without ownership: %v", err)
	}
	// With a group that exists (the process's own), it is set.
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		t.Fatalf("own group: %v", err)
	}
	f.Path, f.Group = "dovecot/passwd2", g.Name
	if err := writeFile(root, f, true); err != nil {
		t.Fatalf("writeFile with ownership to %s: %v", g.Name, err)
	}
}
