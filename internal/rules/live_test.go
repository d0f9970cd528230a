package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"quietmx/internal/atomicfile"
)

func TestLive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	var events []string
	logf := func(f string, a ...any) { events = append(events, fmt.Sprintf(f, a...)) }
	write := func(src string) {
		t.Helper()
		if err := atomicfile.Write(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// No file, no snapshot: an error, and Set is nil.
	l := NewLive(path, logf)
	if _, err := l.Current(); err == nil || l.Set() != nil {
		t.Fatalf("no file: err %v, set %v", err, l.Set())
	}
	// Installed: loaded (with its snapshot).
	if err := Install(path, []byte("default: {type: maildir, value: /m/one}\n")); err != nil {
		t.Fatal(err)
	}
	first := l.Set()
	if first == nil || first.Default.Actions[0].Value != "/m/one" {
		t.Fatalf("after install: %+v", first)
	}
	// Unchanged: the very same set, no reload.
	if l.Set() != first {
		t.Error("unchanged file reloaded")
	}
	// Edited in place, valid: the new set; the snapshot is still /m/one.
	write("default: {type: maildir, value: /m/two}\n")
	if s := l.Set(); s == nil || s.Default.Actions[0].Value != "/m/two" {
		t.Fatalf("after edit: %+v", s)
	}
	// Invalid: the set loaded last stays (two, not the snapshot's one).
	write("default: {type: maildir, value: /m/three\n")
	loaded, err := l.Current()
	if err != nil || !loaded.Stale || loaded.Set.Default.Actions[0].Value != "/m/two" || !strings.Contains(loaded.Reason, "invalid rule file") {
		t.Fatalf("after a bad edit: %+v, %v", loaded, err)
	}
	joined := strings.Join(events, "\n")
	if strings.Count(joined, "refused") != 1 {
		t.Errorf("want one refusal logged:\n%s", joined)
	}
	// Asked again: no second refusal line.
	l.Current()
	if n := strings.Count(strings.Join(events, "\n"), "refused"); n != 1 {
		t.Errorf("refusal logged %d times", n)
	}
}

// A process started on an invalid file uses the snapshot, and says so.
func TestLiveStartsOnSnapshot(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	if err := Install(path, []byte("default: {type: discard}\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("aliases: ["), 0o644); err != nil {
		t.Fatal(err)
	}
	var events []string
	l := NewLive(path, func(f string, a ...any) { events = append(events, fmt.Sprintf(f, a...)) })
	loaded, err := l.Current()
	if err != nil || !loaded.Stale || loaded.Set.Default.Actions[0].Type != TypeDiscard {
		t.Fatalf("%+v, %v", loaded, err)
	}
	if len(events) != 1 || !strings.Contains(events[0], "last-valid snapshot") {
		t.Errorf("events %q", events)
	}
}

// A loaded Set is shared by concurrent deliveries (the LMTP daemon): alias
// lookups through the compiled form must be safe (run with -race).
func TestCompiledSetConcurrentLookups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	var src strings.Builder
	src.WriteString("aliases:\n")
	for i := range 50 {
		fmt.Fprintf(&src, "  u%d@x: {type: maildir, value: /m/u%d}\n", i, i)
	}
	if err := Install(path, []byte(src.String())); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path)
	if err != nil || !loaded.Compiled {
		t.Fatalf("load: compiled %v, %v", loaded.Compiled, err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				k := fmt.Sprintf("u%d@x", (i+g*7)%50)
				if e := loaded.Set.Alias(k); e == nil || e.Actions[0].Value != "/m/"+strings.TrimSuffix(k, "@x") {
					t.Errorf("Alias(%s) = %+v", k, e)
				}
			}
		}()
	}
	wg.Wait()
}
