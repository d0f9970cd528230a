package main

import (
	"flag"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"quietmx/internal/health"
	"quietmx/internal/render"
	"quietmx/internal/rules"
)

// cmdHealth is the image's HEALTHCHECK: exit 0 when Postfix answers on 25,
// Dovecot completes TLS on 993 and the certificate is valid. It also
// reports (without failing) the queue, the mail waiting in the rescue
// directory and a degraded run (on the last valid configuration).
func cmdHealth(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("quietmx health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host := fs.String("host", "127.0.0.1", "address to probe")
	timeout := fs.Duration("timeout", 5*time.Second, "per-probe timeout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cert := "/var/lib/quietmx/tls/cert.pem"
	// The certificate Postfix actually uses, whatever the TLS mode.
	if out, err := exec.Command("postconf", "-h", "smtpd_tls_cert_file").Output(); err == nil && strings.TrimSpace(string(out)) != "" {
		cert = strings.TrimSpace(string(out))
	}
	r := health.Check(*host, "/var/spool/postfix", cert, *timeout)
	// The rescue directory of the rules the agent runs on.
	if loaded, err := rules.Load(filepath.Join(render.DefaultLive, render.RulesFile)); err != nil {
		r.RescueErr = err
	} else if loaded.Set.Rescue != "" {
		r.RescueDir = loaded.Set.Rescue
		r.Rescued, r.RescueErr = health.RescueCount(r.RescueDir)
	}
	r.Degraded = health.ReadDegraded(health.StatusDir)
	fmt.Fprintln(stdout, r.String())
	if !r.Healthy() {
		return 1
	}
	return 0
}
