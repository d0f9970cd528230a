// Command execcost measures what one exec of a delivery command costs, the
// way pipe(8) runs it: a fresh process per message, the message on stdin.
// It runs each variant once per round, in a rotating order, for -n rounds,
// and reports per variant the median wall time and the median CPU time
// (user + system of the child, from wait4's rusage), and both as a ratio
// to the -base variant. Drift on a shared machine then hits every variant
// alike. It asserts nothing; a variant that exits non-zero is reported.
//
// e2e/bench/diag.sh runs it inside the appliance container (as vmail, the
// user pipe(8) runs the agent as), to split the agent's cost per message
// into Go process start, rule loading, logging and the durable write.
//
//	execcost -n 300 -stdin MSGFILE -spec SPECFILE [-base NAME]
//
// SPECFILE has one variant per line: a name, then the command and its
// arguments, separated by white space (no quoting; # starts a comment).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

type variant struct {
	name      string
	argv      []string
	wall, cpu []float64 // milliseconds
	failures  int
	lastErr   string
}

func main() {
	n := flag.Int("n", 300, "rounds (each runs every variant once)")
	stdin := flag.String("stdin", "", "file given to each run on stdin (default: none)")
	specFile := flag.String("spec", "", "variants, one per line: NAME COMMAND ARGS...")
	base := flag.String("base", "", "variant the ratios are relative to (default: the first)")
	warm := flag.Int("warm", 3, "untimed rounds first")
	flag.Parse()
	vs, err := readSpec(*specFile)
	if err != nil || len(vs) == 0 {
		fmt.Fprintf(os.Stderr, "execcost: -spec: %v (want at least one variant)\n", err)
		os.Exit(2)
	}
	for r := -*warm; r < *n; r++ {
		for j := range vs {
			v := vs[(max(r, 0)+j)%len(vs)]
			wall, cpu, err := runOnce(v.argv, *stdin)
			if r < 0 {
				continue
			}
			if err != nil {
				v.failures++
				v.lastErr = err.Error()
			}
			v.wall = append(v.wall, wall)
			v.cpu = append(v.cpu, cpu)
		}
	}
	ref := vs[0]
	for _, v := range vs {
		if v.name == *base {
			ref = v
		}
	}
	rw, rc := median(ref.wall), median(ref.cpu)
	fmt.Printf("%-22s %10s %10s %10s %10s %10s  %s\n", "variant", "wall ms", "wall p90", "cpu ms", "wall ×", "cpu ×", "(median of "+fmt.Sprint(*n)+" runs; × = ratio to "+ref.name+")")
	for _, v := range vs {
		fmt.Printf("%-22s %10.2f %10.2f %10.2f %10.2f %10.2f", v.name, median(v.wall), pct(v.wall, 0.9), median(v.cpu), median(v.wall)/rw, median(v.cpu)/rc)
		if v.failures > 0 {
			fmt.Printf("  FAILED %d× (%s)", v.failures, v.lastErr)
		}
		fmt.Println()
	}
}

func readSpec(path string) ([]*variant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var vs []*variant
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		vs = append(vs, &variant{name: fields[0], argv: fields[1:]})
	}
	return vs, sc.Err()
}

func runOnce(argv []string, stdin string) (wallMS, cpuMS float64, err error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		cmd.Stdin = f
	}
	start := time.Now()
	err = cmd.Run()
	wallMS = float64(time.Since(start).Microseconds()) / 1000
	if cmd.ProcessState != nil {
		cpuMS = float64((cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Microseconds()) / 1000
	}
	return wallMS, cpuMS, err
}

func median(xs []float64) float64 { return pct(xs, 0.5) }

func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1)+0.5)]
}
