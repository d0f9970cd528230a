package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"quietmx/internal/check"
	"quietmx/internal/delivery"
	"quietmx/internal/explain"
	"quietmx/internal/rules"
)

// Operator commands exit 0 (fine), 1 (the rule file has errors) or 2 (usage).

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("altpostlocal check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("c", "", "live rule file (default $ALTPOSTLOCAL_CONFIG, else "+delivery.DefaultRules+")")
	asJSON := fs.Bool("json", false, "print the findings as JSON")
	install := fs.String("install", "", "check this file and, if it has no errors, install it as the live rule file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: altpostlocal check [-c RULES] [--json] [--install NEW.yaml] [FILE]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	live := rulesPath(*config)
	target := live
	switch {
	case *install != "":
		target = *install
	case fs.NArg() == 1:
		target = fs.Arg(0)
	case fs.NArg() > 1:
		fs.Usage()
		return 2
	}
	_, findings := check.File(target)
	errs, warns := 0, 0
	for _, f := range findings {
		if f.Severity == rules.Error {
			errs++
		} else {
			warns++
		}
	}
	installed := ""
	if *install != "" && errs == 0 {
		data, err := os.ReadFile(target)
		if err == nil {
			_, err = check.Install(live, data, target)
		}
		if err != nil {
			fmt.Fprintf(stderr, "altpostlocal check: install %s as %s: %v\n", target, live, err)
			return 1
		}
		installed = live
	}
	if *asJSON {
		out := struct {
			File      string         `json:"file"`
			Errors    int            `json:"errors"`
			Warnings  int            `json:"warnings"`
			Findings  rules.Findings `json:"findings"`
			Installed string         `json:"installed,omitempty"`
		}{target, errs, warns, findings, installed}
		if out.Findings == nil {
			out.Findings = rules.Findings{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	} else {
		for _, f := range findings {
			fmt.Fprintln(stdout, f.String())
		}
		fmt.Fprintf(stdout, "%s: %d error(s), %d warning(s)\n", target, errs, warns)
		if installed != "" {
			fmt.Fprintf(stdout, "installed as %s (snapshot %s, compiled %s)\n", live, rules.LastValidPath(live), rules.CompiledPath(live))
		} else if *install != "" {
			fmt.Fprintf(stdout, "not installed: %s is unchanged\n", live)
		}
	}
	if errs > 0 {
		return 1
	}
	return 0
}

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("altpostlocal explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("c", "", "rule file (default $ALTPOSTLOCAL_CONFIG, else "+delivery.DefaultRules+")")
	sender := fs.String("f", "", "envelope sender to show in ${sender}")
	asJSON := fs.Bool("json", false, "print JSON")
	auth := fs.String("auth", "", "a sender-authentication verdict, e.g. dmarc=fail or \"spf=pass, dmarc=fail policy.dmarc=quarantine\": show what dmarc_fail: does with it")
	sendmail := fs.String("sendmail", "/usr/sbin/sendmail", "sendmail path, as delivery uses it")
	fwd := fs.String("forward-sender", "", "envelope sender for forwards, as delivery uses it")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: altpostlocal explain [-c RULES] [-f SENDER] [--auth VERDICT] [--json] ADDRESS...")
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
		fmt.Fprintf(stderr, "altpostlocal explain: %v\n", err)
		return 2
	}
	path := rulesPath(*config)
	// The same loader as delivery: a broken file explains with the last
	// valid snapshot, exactly as the next delivery would route.
	loaded, err := rules.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "altpostlocal explain: %v\n", err)
		return 1
	}
	reports := explain.ExplainAuth(loaded.Set, *sender, fs.Args(), *sendmail, *fwd, verdict)
	for i := range reports {
		reports[i].Stale = loaded.Reason
		if reports[i].Sender == "" {
			reports[i].Sender = ""
		}
	}
	if *asJSON {
		err = explain.JSON(stdout, reports)
	} else {
		err = explain.Text(stdout, reports)
	}
	if err != nil {
		return 1
	}
	return 0
}

func cmdCompile(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("altpostlocal compile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("c", "", "rule file (default $ALTPOSTLOCAL_CONFIG, else "+delivery.DefaultRules+")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	path := rulesPath(*config)
	data, err := os.ReadFile(path)
	if err == nil {
		err = rules.Compile(path, data)
	}
	if err != nil {
		fmt.Fprintf(stderr, "altpostlocal compile: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s\n", rules.CompiledPath(path))
	return 0
}
