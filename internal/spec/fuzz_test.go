package spec

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzLoad: Load never panics, and every problem it reports is a *Problem
// naming a file (the spec, or its rules_file) or a variable.
func FuzzLoad(f *testing.F) {
	for _, p := range []string{
		"../../appliance/quietmx.yaml",
		"../../appliance/examples/single-domain.yaml",
		"../../appliance/examples/many-domains.yaml",
		"../../appliance/examples/certbot.yaml",
		"../../appliance/examples/certbot-private-ca.yaml",
	} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(head + "rules:\n  x: &a [*a]\n"))
	f.Add([]byte(head + "    auth: {dmarc: yes, arc: false}\nauth: {dkim: true}\n"))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n<<: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if strings.Contains(string(data), "/dev/") {
			return // a rules_file or password_file naming a device could block
		}
		s, err := Load("quietmx.yaml", data, map[string]string{})
		if err == nil {
			if s == nil || s.Rules.Set == nil || len(s.Domains) == 0 || s.Hostname == "" {
				t.Fatalf("Load succeeded with an incomplete Spec: %+v", s)
			}
			return
		}
		var joined interface{ Unwrap() []error }
		errs := []error{err}
		if errors.As(err, &joined) {
			errs = joined.Unwrap()
		}
		for _, e := range errs {
			var p *Problem
			if !errors.As(e, &p) {
				t.Errorf("not a *Problem: %q", e)
				continue
			}
			if p.Env == "" && p.File == "" {
				t.Errorf("problem without a place: %q", e)
			}
		}
	})
}
