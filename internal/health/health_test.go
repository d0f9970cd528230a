package health

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRescueCount(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string, files ...string) string {
		t.Helper()
		d := filepath.Join(root, rel)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(d, f), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	folder := "Maildir/.Rescue"
	mk(folder+"/tmp", "being-written")
	mk(folder+"/cur", "read:2,S")
	newDir := mk(folder+"/new", "a", "b")
	plain := mk("rescue", "1.json", "2.json", ".3.json.tmp")
	tests := []struct {
		name, dir string
		want      int
	}{
		{"Maildir folder: new and cur, not tmp", newDir, 3},
		{"plain directory: no dot-files", plain, 2},
		{"missing", filepath.Join(root, "nowhere"), 0},
		{"none configured", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RescueCount(tt.dir)
			if err != nil || got != tt.want {
				t.Errorf("RescueCount = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestReportString(t *testing.T) {
	base := Report{Queue: 2, CertDays: 80}
	tests := []struct {
		name    string
		r       Report
		want    string
		healthy bool
	}{
		{"plain", base, "smtp ok; imaps ok; queue 2; certificate 80 days left", true},
		{"rescue empty", with(base, func(r *Report) { r.RescueDir = "/r/new" }), "; rescued 0", true},
		{"rescued mail", with(base, func(r *Report) { r.RescueDir, r.Rescued = "/r/new", 4 }), "; rescued 4 waiting in /r/new", true},
		{"rescue unreadable", with(base, func(r *Report) { r.RescueErr = errors.New("denied") }), "; rescued unknown (denied)", true},
		{"degraded", with(base, func(r *Report) { r.Degraded = "the spec on disk is invalid" }), "DEGRADED (the spec on disk is invalid); smtp ok", true},
		{"smtp down", with(base, func(r *Report) { r.SMTP = errors.New("refused") }), "smtp FAIL (refused)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.String(); !strings.Contains(got, tt.want) {
				t.Errorf("String() = %q, want %q in it", got, tt.want)
			}
			if tt.r.Healthy() != tt.healthy {
				t.Errorf("Healthy() = %v", tt.r.Healthy())
			}
		})
	}
}

func with(r Report, f func(*Report)) Report { f(&r); return r }

func TestReadDegraded(t *testing.T) {
	dir := t.TempDir()
	if got := ReadDegraded(dir); got != "" {
		t.Errorf("no file: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, DegradedFile), []byte("why\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := ReadDegraded(dir); got != "why" {
		t.Errorf("ReadDegraded = %q", got)
	}
}
