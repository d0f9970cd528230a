package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolvePath(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "quietmx.yaml")
	if err := os.WriteFile(present, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "typo.yaml")
	tests := []struct {
		name      string
		flag, env string
		def       string
		want      Source
		wantErr   string // substring; "" = no error
	}{
		{name: "flag wins over env", flag: present, env: missing, def: missing, want: Source{present, "--spec"}},
		{name: "env when no flag", env: present, def: missing, want: Source{present, PathEnv}},
		{name: "default present", def: present, want: Source{present, "default"}},
		{name: "default absent: environment alone", def: missing, want: Source{"", "default"}},
		{name: "flag names a missing file", flag: missing, def: present, wantErr: "--spec names the spec file " + missing},
		{name: "env names a missing file", env: missing, def: present, wantErr: "QUIETMX_SPEC names the spec file " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == PathEnv {
					return tt.env
				}
				return ""
			}
			got, err := resolvePath(tt.flag, getenv, tt.def)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			if (got.Note() == "") != (got.Path != "") {
				t.Errorf("Note() = %q for path %q", got.Note(), got.Path)
			}
		})
	}
}
