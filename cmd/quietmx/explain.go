package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"quietmx/internal/explain"
	"quietmx/internal/render"
	"quietmx/internal/rules"
)

// quietmx explain: how the rules route each address, with no side effects.
// By default it explains the live rule file, loaded the way delivery loads
// it (a broken file falls back to its last valid snapshot, and says so);
// --spec explains the spec's rules before they are rendered.
func cmdExplain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("quietmx explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specPath := specFlag(fs, "explain this spec's rules (not yet rendered) instead of the live rule file")
	config := fs.String("c", filepath.Join(render.DefaultLive, render.RulesFile), "the rule file")
	sender := fs.String("f", "", "envelope sender to show in ${sender}")
	asJSON := fs.Bool("json", false, "print JSON")
	auth := fs.String("auth", "", "a sender-authentication verdict, e.g. dmarc=fail or \"spf=pass, dmarc=fail policy.dmarc=quarantine\": show what dmarc_fail: does with it")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: quietmx explain [--spec FILE | -c RULES] [-f SENDER] [--auth VERDICT] [--json] ADDRESS...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	verdict, err := explain.ParseAuth(*auth)
	if err != nil {
		fmt.Fprintf(stderr, "quietmx explain: %v\n", err)
		return 2
	}
	var set *rules.Set
	stale := ""
	if *specPath != "" {
		s := loadSpec(*specPath, stderr)
		if s == nil {
			return 1
		}
		set = s.Rules.Set
	} else {
		loaded, err := rules.Load(*config)
		if err != nil {
			fmt.Fprintf(stderr, "quietmx explain: %v\n", err)
			return 1
		}
		set, stale = loaded.Set, loaded.Reason
	}
	reports := explain.ExplainAuth(set, *sender, fs.Args(), "/usr/sbin/sendmail", "", verdict)
	for i := range reports {
		reports[i].Stale = stale
	}
	if *asJSON {
		err = explain.JSON(stdout, reports)
	} else {
		err = explain.Text(stdout, reports)
	}
	if err != nil {
		fmt.Fprintf(stderr, "quietmx explain: %v\n", err)
		return 1
	}
	return 0
}
