package main

import (
	"flag"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"quietmx/internal/health"
)

// cmdHealth is the image's HEALTHCHECK: exit 0 when Postfix answers on 25,
// Dovecot completes TLS on 993 and the certificate is valid.
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
	fmt.Fprintln(stdout, r.String())
	if !r.Healthy() {
		return 1
	}
	return 0
}
