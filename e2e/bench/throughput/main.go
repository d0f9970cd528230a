// Command throughput is the end-to-end throughput benchmark of
// docs/performance.md (issue 7): N messages (default 2,000 × 4 KiB) sent
// from the host over 8 parallel SMTP sessions into one appliance container,
// timed from the first send until the last message is readable over IMAPS
// (STATUS on INBOX, polled). Each run gets a fresh container (and fresh
// volumes); the variants are interleaved, a b p d a b p d ...:
//
//	a  our agent, resident (delivery: lmtp, the default), the default
//	   generated rule file (one mailbox)
//	b  the same with a rule file of 2,000 aliases and 20 rematch regexps
//	p  our agent under pipe(8) (delivery: pipe), the default rule file
//	c  (not run by default) the trivial-pipe baseline: delivery: pipe with
//	   the pipe(8) service's argv pointed at internal/maildir/testdata/floor
//	   (bind-mounted at /usr/local/bin/floor): read stdin, tmp → fsync →
//	   link → fsync
//	d  stock Postfix virtual(8), for context: in the running container
//	   (a throw-away one) postconf moves the domain from mydestination to
//	   virtual_mailbox_domains, adds a virtual service to master.cf, and
//	   reloads Postfix
//
// Every variant keeps the appliance's smtpd, its RCPT-time policy check
// included. It prints one line per run and a summary (medians per variant,
// the ratios to d, and where the time goes: Postfix's delays= split, the
// container's CPU time per message, the resident daemon's memory). No
// assertions.
//
//	go run ./e2e/bench/throughput -n 2000            # the documented run
//	go run ./e2e/bench/throughput -n 200 -reps 1     # a quick look
//	go run ./e2e/bench/throughput -variants p,c -maxproc 4   # diagnostic
//	go run ./e2e/bench/throughput -print-spec        # variant b's spec
//
// Messages go to user0000@ … user1999@ (message i to user(i mod 2000)), so
// in b every delivery hits an alias, and Postfix, which runs the pipe(8)
// service once per recipient, sees as many destinations as recipients.
//
// The containers run as e2e/harness_test.go starts them (cap-drop ALL plus
// its cap-add list, the QUIETMX_* environment, the spec directory
// bind-mounted read-only), plus, with -volumes (the default), named
// volumes for /var/mail, /var/spool/postfix and /var/lib/quietmx as
// compose.yaml declares them. Plain `docker` through os/exec; every
// container and volume it creates carries a label and is removed at the
// end, on error, and on SIGINT/SIGTERM.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"quietmx/e2e/harness"
	"quietmx/e2e/oracle"
)

const (
	hostname = "mail.bench.example"
	domain   = "bench.example"
	mailbox  = "me@" + domain
	password = "bench-secret"
	// The mailbox's Maildir, as the spec renders it by default.
	mailDir = "/var/mail/vmail/" + domain + "/me/Maildir"
	sender  = "sender@outside.example"
)

// Capabilities as in e2e/harness_test.go (and compose.yaml).
var capAdd = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "NET_BIND_SERVICE", "KILL", "SYS_CHROOT"}

var variantNames = map[string]string{
	"a": "agent over LMTP, default rules (1 mailbox)",
	"b": "agent over LMTP, 2,000 aliases + 20 rematch",
	"p": "agent under pipe(8), default rules",
	"c": "trivial pipe (same pipe(8) service)",
	"d": "Postfix virtual(8)",
}

// variantDelivery is each variant's delivery: value ("" for d, which
// replaces the transport).
var variantDelivery = map[string]string{"a": "lmtp", "b": "lmtp", "p": "pipe", "c": "pipe", "d": ""}

// lmtpRelay is how Postfix's lmtp(8) names the resident agent in relay=.
const lmtpRelay = hostname + "[/run/altpostlocal/lmtp]"

// The pipe(8) service's program, and where variant c mounts the floor.
const (
	agentBin = "/usr/local/bin/altpostlocal"
	floorBin = "/usr/local/bin/floor"
)

type config struct {
	n, size, sessions, reps int
	variants                []string
	image, imageID          string
	volumes                 bool
	aliases, rematches      int
	poll, timeout           time.Duration
	jsonOut                 string
	maxproc                 int
	goCmd                   string
	rcpt                    int
}

func main() {
	var cfg config
	var variants string
	flag.IntVar(&cfg.n, "n", 2000, "messages per run")
	flag.IntVar(&cfg.size, "size", 4096, "message size in bytes (headers included)")
	flag.IntVar(&cfg.sessions, "sessions", 8, "parallel SMTP sessions")
	flag.IntVar(&cfg.reps, "reps", 3, "repetitions of each variant (interleaved)")
	flag.StringVar(&variants, "variants", "a,b,p,d", "variants to run, in this order within each repetition")
	flag.StringVar(&cfg.image, "image", envOr("QUIETMX_IMAGE", "quietmx:latest"), "appliance image (resolved to its ID once)")
	flag.BoolVar(&cfg.volumes, "volumes", true, "named volumes for /var/mail, /var/spool/postfix, /var/lib/quietmx (as compose.yaml); false = the container's own filesystem (as the e2e harness)")
	flag.IntVar(&cfg.aliases, "aliases", 2000, "variant b: number of aliases")
	flag.IntVar(&cfg.rematches, "rematch", 20, "variant b: number of rematch regexps")
	flag.DurationVar(&cfg.poll, "poll", 200*time.Millisecond, "IMAP STATUS poll interval")
	flag.DurationVar(&cfg.timeout, "timeout", 15*time.Minute, "give up on one run after this long")
	flag.StringVar(&cfg.jsonOut, "json", "", "also write every run's figures to this file (JSON lines)")
	flag.StringVar(&cfg.goCmd, "go", "", "go command to build the trivial pipe (default: go on PATH, else /usr/local/go/bin/go)")
	flag.IntVar(&cfg.maxproc, "maxproc", 0, "diagnostic: limit the delivery service's processes (master.cf process_limit of altpostlocal-lmtp, altpostlocal, or virtual for d; 0 = as the image ships it, Postfix's default 100)")
	flag.IntVar(&cfg.rcpt, "rcpt", 0, "also time this many RCPT TO commands of each kind over SMTP in variant b's container after its run (policy DUNNO, policy 550, relay refusal without the policy)")
	printSpec := flag.Bool("print-spec", false, "print variant b's spec (quietmx.yaml) and exit")
	flag.Parse()
	if *printSpec {
		fmt.Print(bigRulesSpec(cfg.aliases, cfg.rematches))
		return
	}
	for _, v := range strings.Split(variants, ",") {
		v = strings.TrimSpace(v)
		if _, ok := variantNames[v]; !ok {
			fatalf("unknown variant %q (want a, b, p, c or d)", v)
		}
		cfg.variants = append(cfg.variants, v)
	}
	if cfg.n < 1 || cfg.sessions < 1 || cfg.reps < 1 || cfg.size < 512 {
		fatalf("want -n ≥ 1, -sessions ≥ 1, -reps ≥ 1, -size ≥ 512")
	}

	b := &bench{cfg: cfg, label: fmt.Sprintf("quietmx.bench=throughput-%d", os.Getpid())}
	// Remove what we started, however we leave.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nthroughput: %v: removing containers and volumes\n", s)
		b.cleanup()
		os.Exit(130)
	}()
	err := b.run()
	b.cleanup()
	if err != nil {
		fatalf("%v", err)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "throughput: "+format+"\n", args...)
	os.Exit(1)
}

type bench struct {
	cfg     config
	label   string
	tmp     string
	trivial string // the trivial-pipe binary

	mu         sync.Mutex
	containers []string
	vols       []string
	cleaned    bool
}

// result is one run.
type result struct {
	Variant     string  `json:"variant"`
	Rep         int     `json:"rep"`
	N           int     `json:"n"`
	Size        int     `json:"size"`
	Sessions    int     `json:"sessions"`
	Volumes     bool    `json:"volumes"`
	MaxProc     int     `json:"maxproc,omitempty"`
	Seconds     float64 `json:"seconds"`      // first send → last message visible over IMAP
	Rate        float64 `json:"msgs_per_s"`   // N / Seconds
	SentSeconds float64 `json:"sent_seconds"` // first send → last 250 to DATA
	AcceptRate  float64 `json:"accept_msgs_per_s"`
	CPUms       float64 `json:"cpu_ms_per_msg"` // container CPU time / N (cgroup)
	Delivered   int     `json:"delivered"`      // Postfix status=sent lines for the transport
	Deferred    int     `json:"deferred"`
	Bounced     int     `json:"bounced"`
	Visible     int     `json:"visible"` // IMAP STATUS at the end (warm-up message excluded)
	DelayB      float64 `json:"median_delays_b"`
	DelayC      float64 `json:"median_delays_c"`
	DelayD      float64 `json:"median_delays_d"` // delivery agent time, seconds
	Delay       float64 `json:"median_delay"`
	AgentMS     float64 `json:"median_agent_duration_ms"` // the agent's own duration_ms (a, b, p)
	// The resident daemon (altpostlocal serve) after the run: resident
	// and peak memory, KiB (VmRSS, VmHWM); 0 when none ran.
	DaemonRSSKB int    `json:"daemon_rss_kib"`
	DaemonHWMKB int    `json:"daemon_peak_kib"`
	Delivery    string `json:"delivery,omitempty"`
	// -rcpt: median and 90th percentile RCPT TO round trips, ms, by kind.
	RCPT     map[string][2]float64 `json:"rcpt_ms,omitempty"`
	Load0    string                `json:"load_start"`
	Load1    string                `json:"load_end"`
	Problems string                `json:"problems,omitempty"`
}

func (b *bench) run() error {
	cfg := &b.cfg
	id, err := docker("image", "inspect", "-f", "{{.Id}}", cfg.image)
	if err != nil {
		return fmt.Errorf("image %s: %v (build it with: bash docker/build-image.sh)", cfg.image, err)
	}
	cfg.imageID = strings.TrimSpace(id)
	created, _ := docker("image", "inspect", "-f", "{{.Created}}", cfg.imageID)
	b.tmp, err = os.MkdirTemp("", "quietmx-bench-throughput.")
	if err != nil {
		return err
	}
	if slices.Contains(cfg.variants, "c") {
		if err := b.buildTrivial(); err != nil {
			return err
		}
	}
	var jsonl *os.File
	if cfg.jsonOut != "" {
		if jsonl, err = os.Create(cfg.jsonOut); err != nil {
			return err
		}
		defer jsonl.Close()
	}
	dv, _ := docker("version", "--format", "{{.Server.Version}}")
	drv, _ := docker("info", "--format", "{{.Driver}}")
	fmt.Printf("# throughput: %d messages × %d B, %d SMTP sessions, %d repetitions, variants %s (interleaved)\n",
		cfg.n, cfg.size, cfg.sessions, cfg.reps, strings.Join(cfg.variants, " "))
	fmt.Printf("image %s = %s (created %s)\n", cfg.image, strings.TrimPrefix(cfg.imageID, "sha256:")[:12], strings.TrimSpace(created))
	mp := "as shipped (Postfix default 100)"
	if cfg.maxproc > 0 {
		mp = fmt.Sprint(cfg.maxproc)
	}
	fmt.Printf("host: %d cores, docker %s, storage %s; volumes: %v; IMAP poll %v; delivery process_limit: %s\n",
		runtime.NumCPU(), strings.TrimSpace(dv), strings.TrimSpace(drv), cfg.volumes, cfg.poll, mp)
	fmt.Printf("started %s, load average %s\n\n", time.Now().UTC().Format(time.RFC3339), loadavg())

	var results []result
	for rep := 1; rep <= cfg.reps; rep++ {
		for _, v := range cfg.variants {
			r, err := b.once(v, rep)
			if err != nil {
				return fmt.Errorf("variant %s, repetition %d: %w", v, rep, err)
			}
			results = append(results, r)
			fmt.Printf("%s#%d  %7.1f msg/s  %6.2fs  (accepted in %.2fs = %.0f msg/s)  cpu %.1f ms/msg  delays b/c/d %.2f/%.2f/%.3f s  agent %s  daemon RSS %d KiB (peak %d)  load %s → %s%s\n",
				v, rep, r.Rate, r.Seconds, r.SentSeconds, r.AcceptRate, r.CPUms, r.DelayB, r.DelayC, r.DelayD,
				agentStr(r.AgentMS), r.DaemonRSSKB, r.DaemonHWMKB, r.Load0, r.Load1, problemStr(r.Problems))
			if jsonl != nil {
				line, _ := json.Marshal(r)
				jsonl.Write(append(line, '\n'))
			}
		}
	}
	summary(cfg, results)
	return nil
}

func agentStr(ms float64) string {
	if ms < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f ms", ms)
}

func problemStr(p string) string {
	if p == "" {
		return ""
	}
	return "  PROBLEMS: " + p
}

// buildTrivial builds internal/maildir/testdata/floor, static, for the bind mount.
func (b *bench) buildTrivial() error {
	goCmd := b.cfg.goCmd
	if goCmd == "" {
		if p, err := exec.LookPath("go"); err == nil {
			goCmd = p
		} else {
			goCmd = "/usr/local/go/bin/go"
		}
	}
	b.trivial = filepath.Join(b.tmp, "floor")
	cmd := exec.Command(goCmd, "build", "-trimpath", "-ldflags", "-s -w -X main.maildir="+mailDir, "-o", b.trivial, "./internal/maildir/testdata/floor")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build floor: %v\n%s", err, out)
	}
	return os.Chmod(b.trivial, 0o755)
}

func docker(args ...string) (string, error) {
	cmd := exec.Command("docker", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func (b *bench) cleanup() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cleaned {
		return
	}
	b.cleaned = true
	if len(b.containers) > 0 {
		exec.Command("docker", append([]string{"rm", "-f"}, b.containers...)...).Run()
	}
	// Anything else with our label (a container created but not yet
	// registered when a signal came).
	if out, err := exec.Command("docker", "ps", "-aq", "--filter", "label="+b.label).Output(); err == nil {
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
	}
	if len(b.vols) > 0 {
		exec.Command("docker", append([]string{"volume", "rm", "-f"}, b.vols...)...).Run()
	}
	if b.tmp != "" {
		os.RemoveAll(b.tmp)
	}
}

// removeContainer removes one run's container and volumes right away.
func (b *bench) removeContainer(name string, vols []string) {
	exec.Command("docker", "rm", "-f", name).Run()
	if len(vols) > 0 {
		exec.Command("docker", append([]string{"volume", "rm", "-f"}, vols...)...).Run()
	}
	b.mu.Lock()
	b.containers = slices.DeleteFunc(b.containers, func(s string) bool { return s == name })
	b.vols = slices.DeleteFunc(b.vols, func(s string) bool { return slices.Contains(vols, s) })
	b.mu.Unlock()
}

// once runs one variant once, in a fresh container.
func (b *bench) once(v string, rep int) (result, error) {
	cfg := &b.cfg
	r := result{Variant: v, Rep: rep, N: cfg.n, Size: cfg.size, Sessions: cfg.sessions, Volumes: cfg.volumes, MaxProc: cfg.maxproc, AgentMS: -1, Delivery: variantDelivery[v]}
	name := fmt.Sprintf("qmx-bench-tp-%d-%s%d", os.Getpid(), v, rep)

	// The spec directory, as the harness makes it.
	specDir, err := os.MkdirTemp(b.tmp, "spec-"+v)
	if err != nil {
		return r, err
	}
	os.Chmod(specDir, 0o755)
	if err := writeFile(filepath.Join(specDir, "password"), password+"\n", 0o644); err != nil {
		return r, err
	}
	if v == "b" {
		if err := writeFile(filepath.Join(specDir, "quietmx.yaml"), bigRulesSpec(cfg.aliases, cfg.rematches), 0o644); err != nil {
			return r, err
		}
	}

	args := []string{"run", "-d", "--label", b.label, "--name", name, "--cap-drop", "ALL"}
	for _, c := range capAdd {
		args = append(args, "--cap-add", c)
	}
	if v == "b" { // QUIETMX_SPEC must name a file that exists
		args = append(args, "-e", "QUIETMX_SPEC=/etc/quietmx/appliance/quietmx.yaml")
	}
	if d := variantDelivery[v]; d != "" {
		args = append(args, "-e", "QUIETMX_DELIVERY="+d)
	}
	args = append(args, "--hostname", hostname,
		"-e", "QUIETMX_HOSTNAME="+hostname,
		"-e", "QUIETMX_DOMAINS="+domain,
		"-e", "QUIETMX_MAILBOX="+mailbox,
		"-e", "QUIETMX_PASSWORD_FILE=/etc/quietmx/appliance/password",
		// Every session comes from one address (the host, through
		// Docker's proxy): lift the per-client limits a real sender meets.
		"-e", "QUIETMX_SMTP_CONNECTIONS_PER_CLIENT=20",
		"-e", "QUIETMX_SMTP_CONNECTION_RATE=0",
		"-e", "QUIETMX_SMTP_MESSAGE_RATE=0",
		"-e", "QUIETMX_SMTP_RECIPIENT_RATE=0",
		"-v", specDir+":/etc/quietmx/appliance:ro",
		"-p", "127.0.0.1::25", "-p", "127.0.0.1::993")
	var vols []string
	if cfg.volumes {
		for _, m := range []struct{ suffix, target string }{{"mail", "/var/mail"}, {"queue", "/var/spool/postfix"}, {"state", "/var/lib/quietmx"}} {
			vol := name + "-" + m.suffix
			if _, err := docker("volume", "create", "--label", b.label, vol); err != nil {
				b.removeContainer(name, vols)
				return r, err
			}
			vols = append(vols, vol)
			b.mu.Lock()
			b.vols = append(b.vols, vol)
			b.mu.Unlock()
			args = append(args, "-v", vol+":"+m.target)
		}
	}
	if v == "c" {
		// Beside the agent, not over it: the resident daemon (the policy
		// service) still runs as `altpostlocal serve`.
		args = append(args, "-v", b.trivial+":"+floorBin+":ro")
	}
	args = append(args, cfg.imageID)
	b.mu.Lock()
	b.containers = append(b.containers, name)
	b.mu.Unlock()
	defer b.removeContainer(name, vols)
	if _, err := docker(args...); err != nil {
		return r, err
	}
	if err := waitReady(name, 2*time.Minute); err != nil {
		return r, err
	}
	var reconf [][]string
	if v == "d" {
		reconf = append(reconf, virtualSteps()...)
	}
	if v == "c" {
		step, err := floorStep(name)
		if err != nil {
			return r, err
		}
		reconf = append(reconf, step)
	}
	if cfg.maxproc > 0 {
		svc := map[string]string{"lmtp": "altpostlocal-lmtp", "pipe": "altpostlocal", "": "virtual"}[variantDelivery[v]]
		reconf = append(reconf, []string{"postconf", "-F", fmt.Sprintf("%s/unix/process_limit=%d", svc, cfg.maxproc)})
	}
	if len(reconf) > 0 {
		if err := reconfigure(name, reconf); err != nil {
			return r, err
		}
	}
	smtpAddr, err := port(name, "25/tcp")
	if err != nil {
		return r, err
	}
	imapAddr, err := port(name, "993/tcp")
	if err != nil {
		return r, err
	}

	// IMAPS with the appliance's own certificate verified, as the e2e suite.
	certPath, err := docker("exec", name, "postconf", "-h", "smtpd_tls_cert_file")
	if err != nil {
		return r, err
	}
	pem, err := docker("exec", name, "cat", strings.TrimSpace(certPath))
	if err != nil {
		return r, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(pem)) {
		return r, errors.New("no certificate in " + certPath)
	}
	ic, err := imapclient.DialTLS(imapAddr, &imapclient.Options{TLSConfig: &tls.Config{ServerName: hostname, RootCAs: pool, MinVersion: tls.VersionTLS12}})
	if err != nil {
		return r, fmt.Errorf("imaps: %w", err)
	}
	defer ic.Close()
	if err := ic.Login(mailbox, password).Wait(); err != nil {
		return r, fmt.Errorf("imap login: %w", err)
	}

	// Warm-up, untimed: one message through the whole path (it creates the
	// Maildir, loads the binaries, and for d proves virtual(8) is in use).
	if err := sendOne(smtpAddr, "user0000@"+domain, message(0, 0, "warm-up", cfg.size)); err != nil {
		return r, fmt.Errorf("warm-up send: %w", err)
	}
	if _, _, err := waitCount(ic, 1, time.Minute, 50*time.Millisecond, nil); err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}

	msgs := make([][]byte, cfg.n)
	for i := range msgs {
		msgs[i] = message(rep, i+1, v, cfg.size)
	}
	clients := make([]*smtp.Client, cfg.sessions)
	for i := range clients {
		c, err := harness.Dial(smtpAddr, helo)
		if err != nil {
			return r, err
		}
		clients[i] = c
	}
	cpu0, cpuErr := cpuNanos(name)
	r.Load0 = loadavg()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, cfg.sessions)
	var sentAt time.Time
	var sentMu sync.Mutex
	abort := make(chan struct{})
	var abortOnce sync.Once
	for s, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < cfg.n; i += cfg.sessions {
				if err := sendOn(c, fmt.Sprintf("user%04d@%s", i%2000, domain), msgs[i]); err != nil {
					errs[s] = fmt.Errorf("message %d: %w", i, err)
					abortOnce.Do(func() { close(abort) })
					return
				}
			}
			sentMu.Lock()
			sentAt = time.Now()
			sentMu.Unlock()
			c.Quit()
		}()
	}
	sendDone := make(chan struct{})
	go func() { wg.Wait(); close(sendDone) }()
	got, seenAt, err := waitCount(ic, 1+cfg.n, cfg.timeout, cfg.poll, abort)
	<-sendDone
	if err := errors.Join(errs...); err != nil {
		return r, fmt.Errorf("send: %w", err)
	}
	if err != nil {
		return r, err
	}
	r.Load1 = loadavg()
	r.Seconds = seenAt.Sub(start).Seconds()
	r.Rate = float64(cfg.n) / r.Seconds
	r.SentSeconds = sentAt.Sub(start).Seconds()
	r.AcceptRate = float64(cfg.n) / r.SentSeconds
	r.Visible = got - 1
	if cpu1, err := cpuNanos(name); err == nil && cpuErr == nil {
		r.CPUms = float64(cpu1-cpu0) / 1e6 / float64(cfg.n)
	}
	ic.Logout().Wait()

	// What the logs say: every message delivered by the intended transport,
	// nothing deferred or bounced; the delays split; the queue empty.
	logs, err := dockerLogs(name)
	if err != nil {
		return r, err
	}
	relay := map[string]string{"lmtp": lmtpRelay, "pipe": "altpostlocal", "": "virtual"}[variantDelivery[v]]
	st := parseLogs(logs, relay)
	r.Delivered, r.Deferred, r.Bounced = st.sent, st.deferred, st.bounced
	r.DelayB, r.DelayC, r.DelayD, r.Delay = median(st.b), median(st.c), median(st.d), median(st.total)
	if len(st.agentMS) > 0 {
		r.AgentMS = median(st.agentMS)
	}
	var problems []string
	if st.sent < cfg.n+1 {
		problems = append(problems, fmt.Sprintf("only %d status=sent via %s (want %d)", st.sent, relay, cfg.n+1))
	}
	if st.other > 0 {
		problems = append(problems, fmt.Sprintf("%d delivered by another transport", st.other))
	}
	if st.deferred > 0 || st.bounced > 0 {
		problems = append(problems, fmt.Sprintf("%d deferred, %d bounced", st.deferred, st.bounced))
	}
	// The e2e suite's never-bounce oracle too: it also sees what the
	// counts above do not (SOFTBOUNCE, expired, notices, the null sender).
	if vs := oracle.Check(logs, nil, oracle.Expect{}); len(vs) > 0 {
		problems = append(problems, fmt.Sprintf("%d oracle violations, the first: %s", len(vs), vs[0]))
	}
	r.DaemonRSSKB, r.DaemonHWMKB = daemonMemory(name)
	if v == "b" && cfg.rcpt > 0 {
		if r.RCPT, err = rcptLatency(smtpAddr, cfg.rcpt); err != nil {
			problems = append(problems, "rcpt latency: "+err.Error())
		}
	}
	if v == "a" || v == "b" || v == "p" {
		if st.agentNotDelivered > 0 {
			problems = append(problems, fmt.Sprintf("%d agent lines not outcome=delivered", st.agentNotDelivered))
		}
	}
	if r.Visible != cfg.n {
		problems = append(problems, fmt.Sprintf("%d messages visible, want %d", r.Visible, cfg.n))
	}
	if q, err := docker("exec", name, "postqueue", "-p"); err != nil || !strings.Contains(q, "Mail queue is empty") {
		problems = append(problems, "queue not empty: "+firstLine(q))
	}
	r.Problems = strings.Join(problems, "; ")
	return r, nil
}

func writeFile(path, content string, mode os.FileMode) error {
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func dockerLogs(name string) (string, error) {
	out, err := exec.Command("docker", "logs", name).CombinedOutput()
	return string(out), err
}

// waitReady waits for the supervisor's ready line.
func waitReady(name string, within time.Duration) error {
	var logs, running string
	err := harness.Until(within, 200*time.Millisecond, func() (bool, error) {
		logs, _ = dockerLogs(name)
		if strings.Contains(logs, "quietmx: ready") {
			return true, nil
		}
		running, _ = docker("inspect", "-f", "{{.State.Running}}", name)
		return false, nil
	})
	if err == nil {
		return nil
	}
	if len(logs) > 4000 {
		logs = logs[len(logs)-4000:]
	}
	return fmt.Errorf("%s not ready (running=%s): %w; log tail:\n%s", name, strings.TrimSpace(running), err, logs)
}

func port(name, p string) (string, error) {
	out, err := docker("port", name, p)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "127.0.0.1:") {
			return l, nil
		}
	}
	return "", fmt.Errorf("docker port %s %s: %q", name, p, out)
}

// virtualSteps turn the running appliance into a stock virtual(8) setup:
// the domain leaves mydestination (local_transport = the agent) for
// virtual_mailbox_domains, every address maps to the one Maildir, and
// master.cf gets the virtual service the appliance does not ship.
// Benchmark only, in a throw-away container.
func virtualSteps() [][]string {
	return [][]string{
		{"postconf", "-e",
			"mydestination = $myhostname, localhost",
			"virtual_mailbox_domains = " + domain,
			"virtual_mailbox_base = /var/mail/vmail",
			"virtual_mailbox_maps = static:" + domain + "/me/Maildir/",
			"virtual_uid_maps = static:5000",
			"virtual_gid_maps = static:5000",
			"virtual_mailbox_limit = 0"},
		{"postconf", "-M", "virtual/unix=virtual unix - n n - - virtual"},
	}
}

// The RCPT kinds -rcpt times: an address of ours the policy service
// answers DUNNO, one it refuses (550 5.1.1), and a foreign one refused by
// smtpd_relay_restrictions before the policy service is asked.
var rcptKinds = []struct{ kind, rcpt, code string }{
	{"policy DUNNO", "user0042@" + domain, "250"},
	{"policy 550 5.1.1", "gone@" + domain, "550"},
	{"relay refused, no policy", "someone@foreign.example", "554"},
}

// rcptLatency times n RCPT TO round trips of each kind, interleaved, each
// after its own MAIL FROM and followed by RSET. A session serves 3 rounds:
// 6 refusals, under smtpd_soft_error_limit (10), past which Postfix
// sleeps before each reply.
func rcptLatency(addr string, n int) (map[string][2]float64, error) {
	times := make([][]float64, len(rcptKinds))
	var c *smtp.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for i := range n {
		if i%3 == 0 {
			if c != nil {
				c.Quit()
			}
			var err error
			if c, err = harness.Dial(addr, helo); err != nil {
				return nil, err
			}
		}
		for k, rk := range rcptKinds {
			if err := c.Mail(sender, nil); err != nil {
				return nil, err
			}
			t0 := time.Now()
			err := c.Rcpt(rk.rcpt, nil)
			d := time.Since(t0)
			var se *smtp.SMTPError
			switch {
			case err == nil && rk.code == "250":
			case errors.As(err, &se) && strconv.Itoa(se.Code) == rk.code:
			default:
				return nil, fmt.Errorf("RCPT TO:<%s>: %v, want %s", rk.rcpt, err, rk.code)
			}
			times[k] = append(times[k], float64(d.Microseconds())/1000)
			if err := c.Reset(); err != nil {
				return nil, err
			}
		}
	}
	out := map[string][2]float64{}
	for k, rk := range rcptKinds {
		sort.Float64s(times[k])
		out[rk.kind] = [2]float64{median(times[k]), times[k][len(times[k])*9/10]}
	}
	return out, nil
}

// floorStep points the pipe(8) service's argv at the floor (variant c),
// keeping the rest of its master.cf entry.
func floorStep(name string) ([]string, error) {
	entry, err := docker("exec", name, "postconf", "-M", "altpostlocal/unix")
	if err != nil {
		return nil, err
	}
	entry = strings.Join(strings.Fields(entry), " ")
	if !strings.Contains(entry, "argv="+agentBin+" ") {
		return nil, fmt.Errorf("the pipe service does not run %s (delivery: pipe?): %q", agentBin, entry)
	}
	return []string{"postconf", "-M", "altpostlocal/unix=" + strings.Replace(entry, "argv="+agentBin+" ", "argv="+floorBin+" ", 1)}, nil
}

// daemonMemory is the resident daemon's VmRSS and VmHWM in KiB (0, 0 when
// none runs).
func daemonMemory(name string) (rss, hwm int) {
	out, err := docker("exec", name, "sh", "-c", harness.FindServe)
	if err == nil {
		var pid, uid int
		fmt.Sscan(out, &pid, &uid, &rss, &hwm)
	}
	return rss, hwm
}

// reconfigure runs the postconf steps in the container, then reloads
// Postfix and waits until the master logged the reload.
func reconfigure(name string, steps [][]string) error {
	for _, s := range append(steps, []string{"postfix", "reload"}) {
		if _, err := docker(append([]string{"exec", name}, s...)...); err != nil {
			return err
		}
	}
	err := harness.Until(30*time.Second, 100*time.Millisecond, func() (bool, error) {
		logs, _ := dockerLogs(name)
		return strings.Contains(logs, "reload -- version"), nil
	})
	if err != nil {
		return fmt.Errorf("postfix reload not logged: %w", err)
	}
	return nil
}

// cpuNanos is the container's CPU time so far, in nanoseconds: cgroup v1
// cpuacct.usage (ns), else cgroup v2 cpu.stat usage_usec.
func cpuNanos(name string) (int64, error) {
	out, err := docker("exec", name, "sh", "-c",
		`for f in /sys/fs/cgroup/cpuacct/cpuacct.usage /sys/fs/cgroup/cpu,cpuacct/cpuacct.usage; do
		   [ -r "$f" ] && { echo "ns $(cat "$f")"; exit 0; }
		 done
		 echo "us $(sed -n 's/^usage_usec //p' /sys/fs/cgroup/cpu.stat)"`)
	if err != nil {
		return 0, err
	}
	unit, num, _ := strings.Cut(strings.TrimSpace(out), " ")
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cpu usage %q: %v", out, err)
	}
	if unit == "us" {
		v *= 1000
	}
	return v, nil
}

// message builds one message of exactly size bytes with CRLF line endings.
func message(rep, i int, tag string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <user%04d@%s>\r\nSubject: throughput %s run %d message %d\r\nMessage-ID: <%d.%d.%s.%d@bench.example>\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		sender, i%2000, domain, tag, rep, i, rep, i, tag, time.Now().UnixNano(), time.Now().Format(time.RFC1123Z))
	line := "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuv\r\n"
	for b.Len()+len(line) <= size-2 {
		b.WriteString(line)
	}
	for b.Len() < size-2 {
		b.WriteByte('x')
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// helo is the name the benchmark's SMTP sessions give in EHLO.
const helo = "client.bench.example"

// sendOne sends one message in a session of its own (harness.Send, the
// sender the e2e suite uses too).
func sendOne(addr, rcpt string, msg []byte) error {
	_, err := harness.Send(addr, helo, sender, []string{rcpt}, msg)
	return err
}

// sendOn sends one message on an open session.
func sendOn(c *smtp.Client, rcpt string, msg []byte) error {
	_, err := harness.SendOn(c, sender, []string{rcpt}, msg)
	return err
}

// waitCount polls STATUS INBOX every interval until it shows at least
// want messages and returns the count and when it was seen. It gives up
// early when abort is closed.
func waitCount(c *imapclient.Client, want int, within, every time.Duration, abort <-chan struct{}) (int, time.Time, error) {
	got, seen := 0, time.Time{}
	err := harness.Until(within, every, func() (bool, error) {
		st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			return false, fmt.Errorf("imap status: %w", err)
		}
		seen = time.Now()
		if st.NumMessages != nil {
			got = int(*st.NumMessages)
		}
		if got >= want {
			return true, nil
		}
		select {
		case <-abort:
			return false, errors.New("sending failed")
		default:
			return false, nil
		}
	})
	if errors.Is(err, harness.ErrTimeout) {
		err = fmt.Errorf("INBOX has %d messages after %v, want %d", got, within, want)
	}
	return got, seen, err
}

// bigRulesSpec is variant b's spec: the environment gives hostname,
// domains and the mailbox; the spec adds a rules: block with the given
// number of aliases (the addresses the benchmark sends to, each a full
// address key) and rematch regexps (none matching them, so every delivery
// tries them all).
func bigRulesSpec(aliases, rematches int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# e2e/bench/throughput variant b: %d aliases, %d rematch regexps.\n", aliases, rematches)
	b.WriteString("rules:\n")
	fmt.Fprintf(&b, "  extension: %s\n", strconv.Quote(`\+`))
	b.WriteString("  rescue: /var/mail/vmail/rescue\n")
	if rematches > 0 {
		b.WriteString("  rematch:\n")
		for i := range rematches {
			// Unanchored, with alternation and classes: what list and
			// bounce-address rewrites look like.
			re := fmt.Sprintf(`(?:list|team)%02d-[a-z0-9.]+(?:-bounces)?(?:\+[^@]*)?@%s`, i, regexp.QuoteMeta(domain))
			fmt.Fprintf(&b, "    %s: %s\n", strconv.Quote(re), strconv.Quote(mailbox))
		}
	}
	b.WriteString("  aliases:\n")
	for i := range aliases {
		fmt.Fprintf(&b, "    \"user%04d@%s\":\n      type: maildir\n      value: %s\n", i, domain, mailDir)
	}
	// One refused address, for -rcpt.
	b.WriteString("    \"gone@" + domain + "\": {type: reject, text: \"This address is no longer in use\"}\n")
	fmt.Fprintf(&b, "  default:\n    type: maildir\n    value: %s\n", mailDir)
	return b.String()
}

type logStats struct {
	sent, other, deferred, bounced int
	b, c, d, total                 []float64
	agentMS                        []float64
	agentNotDelivered              int
}

var (
	deliveryRe = regexp.MustCompile(`relay=([^,]+), .*?delay=([0-9.]+), delays=([0-9.]+)/([0-9.]+)/([0-9.]+)/([0-9.]+), dsn=[0-9.]+, status=(\w+)`)
	agentRe    = regexp.MustCompile(`msg=delivery .*outcome=(\w+) .*duration_ms=([0-9]+)`)
)

func parseLogs(logs, relay string) logStats {
	var st logStats
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := deliveryRe.FindStringSubmatch(line); m != nil {
			switch m[7] {
			case "sent":
				if m[1] != relay {
					st.other++
					continue
				}
				st.sent++
				st.total = append(st.total, atof(m[2]))
				st.b = append(st.b, atof(m[4]))
				st.c = append(st.c, atof(m[5]))
				st.d = append(st.d, atof(m[6]))
			case "deferred":
				st.deferred++
			case "bounced":
				st.bounced++
			}
			continue
		}
		if m := agentRe.FindStringSubmatch(line); m != nil {
			if m[1] != "delivered" {
				st.agentNotDelivered++
			}
			st.agentMS = append(st.agentMS, atof(m[2]))
		}
	}
	return st
}

func atof(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summary(cfg *config, rs []result) {
	fmt.Printf("\nfinished %s, load average %s\n\n", time.Now().UTC().Format(time.RFC3339), loadavg())
	fmt.Println("| variant | runs | msg/s median | msg/s min–max | accept msg/s median | CPU ms/msg median | median delays b/c/d (s) | agent duration_ms median | daemon RSS / peak MiB |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	med := map[string]float64{}
	for _, v := range cfg.variants {
		var rate, acc, cpu, db, dc, dd, ag, rss, hwm []float64
		for _, r := range rs {
			if r.Variant != v {
				continue
			}
			rate = append(rate, r.Rate)
			acc = append(acc, r.AcceptRate)
			cpu = append(cpu, r.CPUms)
			db = append(db, r.DelayB)
			dc = append(dc, r.DelayC)
			dd = append(dd, r.DelayD)
			if r.AgentMS >= 0 {
				ag = append(ag, r.AgentMS)
			}
			if r.DaemonRSSKB > 0 {
				rss = append(rss, float64(r.DaemonRSSKB)/1024)
				hwm = append(hwm, float64(r.DaemonHWMKB)/1024)
			}
		}
		if len(rate) == 0 {
			continue
		}
		med[v] = median(rate)
		agent := "-"
		if len(ag) > 0 {
			agent = fmt.Sprintf("%.0f", median(ag))
		}
		daemon := "-"
		if len(rss) > 0 {
			daemon = fmt.Sprintf("%.1f / %.1f", median(rss), median(hwm))
		}
		fmt.Printf("| %s: %s | %d | %.1f | %.1f–%.1f | %.0f | %.1f | %.2f / %.2f / %.3f | %s | %s |\n",
			v, variantNames[v], len(rate), med[v], slices.Min(rate), slices.Max(rate), median(acc), median(cpu),
			median(db), median(dc), median(dd), agent, daemon)
	}
	fmt.Println()
	ratio := func(x, y, target string) {
		if med[x] > 0 && med[y] > 0 {
			fmt.Printf("%s/%s = %.2f%s\n", x, y, med[x]/med[y], target)
		}
	}
	ratio("a", "d", "")
	ratio("b", "d", "")
	ratio("p", "d", "")
	ratio("c", "d", "")
	ratio("a", "p", "  (resident over pipe(8))")
	ratio("b", "a", "  (2,000 aliases + 20 rematch over the default rules)")
	for _, r := range rs {
		if len(r.RCPT) == 0 {
			continue
		}
		fmt.Printf("\nRCPT TO round trip over SMTP, %s#%d (median / 90th percentile, ms):\n", r.Variant, r.Rep)
		for _, rk := range rcptKinds {
			m := r.RCPT[rk.kind]
			fmt.Printf("| %s | %.2f | %.2f |\n", rk.kind, m[0], m[1])
		}
	}
	var problems int
	for _, r := range rs {
		if r.Problems != "" {
			problems++
			fmt.Printf("run %s#%d: %s\n", r.Variant, r.Rep, r.Problems)
		}
	}
	if problems == 0 {
		fmt.Println("every run: all messages delivered by the intended transport, none deferred or bounced, queue empty")
	}
}
