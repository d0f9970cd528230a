package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"quietmx/internal/rules"
)

// BenchmarkExecDelivery measures what Postfix pays per message: one exec of
// the real, static agent binary per delivery, against the floor (a static Go
// binary that only reads stdin and does the bare durable Maildir write,
// internal/maildir/testdata/floor). Process creation and fsync dominate
// both and drift from run to run, so the variants are exec'd interleaved in
// one loop (each iteration runs each variant once, in a rotating order) and
// compared by medians: drift then hits every variant alike, and the ratio to
// the floor of the same run means something where absolute microseconds on
// a shared machine do not.
//
//	go test -run '^$' -bench ExecDelivery -benchtime 200x -count 10 ./cmd/altpostlocal/
//
// It reports the median wall time of each variant, its ratio to the floor
// (the targets: small ≤ 1.2, large ≤ 1.5) and the peak RSS of the
// floor and of the agent for a 4 KiB and a 50 MiB message (target: message
// size + 16 MiB). It asserts no timings; it fails only when a run does not
// exit 0, writes to stdout/stderr or leaves no message in new/.
func BenchmarkExecDelivery(b *testing.B) {
	dir := b.TempDir()
	floorBin, agentBin := buildBinaries(b, filepath.Join(dir, "bin"))
	msg4k := writeFile(b, filepath.Join(dir, "msg-4KiB.eml"), benchMessage(4<<10))

	// One Maildir per variant, so that each can be checked to hold exactly
	// the messages it was given.
	floor := newVariant(b, dir, "floor")
	small := newVariant(b, dir, "small")
	largeYAML := newVariant(b, dir, "large-yaml")
	largeCompiled := newVariant(b, dir, "large-compiled")
	variants := []*variant{floor, small, largeYAML, largeCompiled}
	agents := variants[1:]

	floor.argv = []string{floorBin, floor.maildir}
	small.argv = agentArgv(agentBin, writeFile(b, filepath.Join(dir, "small.yaml"), smallRules(small.maildir)))
	// The same large file twice: the compiled form sits beside its rule file
	// (rules.CompiledPath), so only the second copy has one.
	yamlRules := writeFile(b, filepath.Join(dir, "large-yaml.yaml"), largeRules(largeYAML.maildir))
	compiledRules := writeFile(b, filepath.Join(dir, "large-compiled.yaml"), largeRules(largeCompiled.maildir))
	largeYAML.argv = agentArgv(agentBin, yamlRules)
	largeCompiled.argv = agentArgv(agentBin, compiledRules)
	if out, err := exec.Command(agentBin, "compile", "-c", compiledRules).CombinedOutput(); err != nil {
		b.Fatalf("altpostlocal compile: %v\n%s", err, out)
	}
	// A stale or unreadable compiled form silently falls back to the YAML:
	// make sure each large variant measures what its name says.
	for path, want := range map[string]bool{yamlRules: false, compiledRules: true} {
		if l, err := rules.Load(path); err != nil || l.Compiled != want {
			b.Fatalf("rules.Load(%s): compiled=%v, err=%v; want compiled=%v", path, l.Compiled, err, want)
		}
	}

	// Warm up outside the timer: page cache, and the first delivery into
	// each fresh Maildir creates its tmp/ new/ cur/.
	for _, v := range variants {
		v.run(b, msg4k)
	}
	delivered := 1
	for b.Loop() {
		// Rotate the order so that no variant always runs right after the
		// same other one (or first, after the benchmark's own bookkeeping).
		for j := range variants {
			v := variants[(delivered+j)%len(variants)]
			v.took = append(v.took, v.run(b, msg4k))
		}
		delivered++
	}

	// Everything below is outside the timer.
	for _, v := range variants {
		v.checkDelivered(b, delivered)
	}
	b.ReportMetric(0, "ns/op") // one op is four execs: the medians say more
	base := median(floor.took)
	b.ReportMetric(micros(base), "floor-µs")
	for _, v := range agents {
		m := median(v.took)
		b.ReportMetric(micros(m), v.name+"-µs")
		b.ReportMetric(float64(m)/float64(base), v.name+"-x-floor")
	}

	// Peak memory: one run per variant and size is enough, as it hardly
	// varies (and each 50 MiB run costs a 50 MiB fsync).
	const bigSize = 50 << 20
	msg50m := writeFile(b, filepath.Join(dir, "msg-50MiB.eml"), benchMessage(bigSize))
	for _, size := range []struct {
		name, msg string
	}{{"4KiB", msg4k}, {"50MiB", msg50m}} {
		var agentPeak int64
		delivered++
		for _, v := range variants {
			rss := v.peakRSS(b, size.msg)
			if v == floor {
				b.ReportMetric(mib(rss), "floor-rss-"+size.name+"-MiB")
			} else {
				agentPeak = max(agentPeak, rss)
			}
			v.checkDelivered(b, delivered)
		}
		b.ReportMetric(mib(agentPeak), "agent-rss-"+size.name+"-MiB")
		if size.msg == msg50m {
			b.ReportMetric(mib(agentPeak-bigSize), "agent-rss-50MiB-over-msg-MiB")
		}
	}
}

// variant is one program the benchmark execs, and what it measured.
type variant struct {
	name    string
	argv    []string
	maildir string
	took    []time.Duration
	out     string // the children's stdout and stderr, which must stay empty
}

func newVariant(b *testing.B, dir, name string) *variant {
	if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
		b.Fatal(err)
	}
	return &variant{
		name:    name,
		maildir: filepath.Join(dir, name, "Maildir"),
		out:     filepath.Join(dir, name, "out"),
	}
}

// run execs the variant once with the message file on stdin, as pipe(8)
// would, and returns the wall time from start to reaped exit.
func (v *variant) run(b *testing.B, msgPath string) time.Duration {
	return v.runArgv(b, v.argv, msgPath)
}

// runArgv execs argv for v. Stdin and the output are files, not pipes: pipes
// would add the benchmark's own copying goroutines to every measurement.
func (v *variant) runArgv(b *testing.B, argv []string, msgPath string) time.Duration {
	stdin, err := os.Open(msgPath)
	if err != nil {
		b.Fatal(err)
	}
	defer stdin.Close()
	out, err := os.OpenFile(v.out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, out, out
	// What Postfix passes a pipe(8) command (export_environment), so that
	// the benchmark's environment (GOGC, GODEBUG...) cannot leak in.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "TZ=UTC"}
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	output, _ := os.ReadFile(v.out)
	if err != nil {
		b.Fatalf("%s: %v (want exit 0)\n%s", strings.Join(argv, " "), err, output)
	}
	// In delivery mode the agent must write nothing that Postfix could
	// read as a status.
	if len(output) > 0 {
		b.Fatalf("%s wrote to stdout/stderr: %q", v.name, output)
	}
	return took
}

// gnuTime runs a command and reports the ru_maxrss its wait4 returned.
//
// The benchmark cannot take ProcessState.SysUsage().Maxrss of its own
// children: on exec, Linux folds the high-water RSS of the address space
// being replaced into the child's maxrss, and os/exec starts children with
// vfork (CLONE_VM), whose address space is the parent's. Every child would
// "peak" at least at the test binary's RSS (13 MiB here, 170 MiB once the
// 50 MiB message is built in memory). GNU time's own RSS is about 1 MiB.
const gnuTime = "/usr/bin/time"

// peakRSS runs the variant once under GNU time and returns its peak RSS in
// bytes.
func (v *variant) peakRSS(b *testing.B, msgPath string) int64 {
	if _, err := os.Stat(gnuTime); err != nil {
		b.Fatalf("peak RSS needs GNU time (Debian: apt-get install time): %v", err)
	}
	report := v.out + ".rss"
	v.runArgv(b, append([]string{gnuTime, "-f", "%M", "-o", report}, v.argv...), msgPath)
	data, err := os.ReadFile(report)
	if err != nil {
		b.Fatal(err)
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		b.Fatalf("%s -f %%M: %v", gnuTime, err)
	}
	return kib << 10
}

// checkDelivered fails unless the variant's Maildir holds exactly n
// messages: an exit 0 that delivered nothing would make a fast, false
// measurement.
func (v *variant) checkDelivered(b *testing.B, n int) {
	got, err := os.ReadDir(filepath.Join(v.maildir, "new"))
	if err != nil {
		b.Fatal(err)
	}
	if len(got) != n {
		b.Fatalf("%s: %d messages in %s/new, want %d", v.name, len(got), v.maildir, n)
	}
}

// buildBinaries builds the floor and the agent as they ship: static
// (CGO_ENABLED=0) and -trimpath, like `make build`.
func buildBinaries(b *testing.B, dir string) (floor, agent string) {
	goBin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first in PATH
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", dir+string(filepath.Separator),
		".", "../../internal/maildir/testdata/floor")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "floor"), filepath.Join(dir, "altpostlocal")
}

// agentArgv is the agent's command line as the appliance's master.cf gives
// it, with the log sent nowhere so that logging costs only its formatting.
func agentArgv(agent, rulesFile string) []string {
	return []string{agent, "-c", rulesFile, "-log", "/dev/null", "-f", "s@example.org", "--", "rcpt@example.com"}
}

// smallRules is a typical hand-written rule file: a few aliases, and every
// other address (rcpt@example.com included) to one Maildir.
func smallRules(maildir string) []byte {
	return fmt.Appendf(nil, `extension: "\\+"
anchors:
  - &main {type: maildir, value: %s}
aliases:
  postmaster: *main
  abuse: *main
  info@example.com: *main
  sales@example.com: {type: maildir, value: /var/mail/vmail/sales/Maildir}
default: *main
rescue: /var/mail/vmail/rescue
`, maildir)
}

// largeRules is the large case: 2,000 aliases (full addresses,
// domain-less keys and catch-alls), 20 rematch regexes of which none
// matches rcpt@example.com (so all 20 run), and an extension. The recipient
// is an exact key in the middle of the file.
func largeRules(maildir string) []byte {
	var s bytes.Buffer
	s.WriteString("extension: \"\\\\+\"\nrematch:\n")
	for i := range 20 {
		fmt.Fprintf(&s, "  \"^bounce-[0-9]+@list%d\\\\.example\\\\.net$\": bounces%d@example.net\n", i, i)
	}
	s.WriteString("aliases:\n")
	for i := range 2000 {
		switch {
		case i == 1000:
			fmt.Fprintf(&s, "  rcpt@example.com: {type: maildir, value: %s}\n", maildir)
		case i%10 == 1:
			fmt.Fprintf(&s, "  role%d: {type: maildir, value: /var/mail/vmail/role%d/Maildir}\n", i, i)
		case i%10 == 2:
			fmt.Fprintf(&s, "  \"@d%d.example\": {type: maildir, value: /var/mail/vmail/catchall%d/Maildir}\n", i, i)
		default:
			fmt.Fprintf(&s, "  user%d@d%d.example: {type: maildir, value: /var/mail/vmail/user%d/Maildir}\n", i, i%50, i)
		}
	}
	s.WriteString("default: {type: maildir, value: /var/mail/vmail/default/Maildir}\nrescue: /var/mail/vmail/rescue\n")
	return s.Bytes()
}

// benchMessage returns a plain RFC 5322 message of exactly size bytes (for any
// size above its headers).
func benchMessage(size int) []byte {
	var m bytes.Buffer
	m.WriteString("From: Sender <s@example.org>\nTo: rcpt@example.com\nSubject: benchmark\n" +
		"Message-ID: <bench@example.org>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\n")
	line := "The quick brown fox jumps over the lazy dog, again and again and again.\n"
	for m.Len()+len(line) <= size {
		m.WriteString(line)
	}
	if rest := size - m.Len(); rest > 0 {
		m.WriteString(strings.Repeat("x", rest-1) + "\n")
	}
	return m.Bytes()
}

func writeFile(b *testing.B, path string, data []byte) string {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func mib(n int64) float64            { return float64(n) / (1 << 20) }
