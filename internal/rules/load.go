package rules

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"quietmx/internal/atomicfile"
	"strings"
)

// Snapshot and compiled-form paths beside a rule file. Whoever validates a
// rule file (check --install, the renderer) writes them; the agent only reads
// them, so it needs no write access to the directory.
func LastValidPath(path string) string { return path + ".last-valid" }
func CompiledPath(path string) string  { return path + ".compiled" }

// ErrRulesInvalid means no usable rule file was found (nor a snapshot).
var ErrRulesInvalid = errors.New("no usable rule file")

// Loaded is the outcome of Load.
type Loaded struct {
	Set      *Set
	Stale    bool   // the last valid snapshot was used
	Reason   string // why the live file was not used (when Stale)
	Compiled bool   // the compiled form was used
	Findings Findings
}

// Load reads the rule file at path for delivery. It prefers the compiled
// form when its content hash matches the file; it falls back to the last
// valid snapshot when the file is missing, unreadable or invalid (any Error
// finding, exactly what makes `check` exit 1); and it fails
// (ErrRulesInvalid: the agent defers) only when neither can be used.
func Load(path string) (Loaded, error) {
	set, findings, err := loadOne(path, path)
	if err == nil {
		return Loaded{Set: set.set, Compiled: set.compiled, Findings: findings}, nil
	}
	reason := err.Error()
	snap := LastValidPath(path)
	sset, _, serr := loadOne(snap, path)
	if serr != nil {
		if errors.Is(serr, os.ErrNotExist) {
			return Loaded{Findings: findings}, fmt.Errorf("%w: %s (and no last-valid snapshot %s)", ErrRulesInvalid, reason, snap)
		}
		return Loaded{Findings: findings}, fmt.Errorf("%w: %s (and snapshot: %v)", ErrRulesInvalid, reason, serr)
	}
	return Loaded{Set: sset.set, Stale: true, Reason: reason, Compiled: sset.compiled, Findings: findings}, nil
}

type loadedSet struct {
	set      *Set
	compiled bool
}

// loadOne loads file, trying the compiled form kept beside live (which is
// keyed on content, so it serves the snapshot too when they are equal).
func loadOne(file, live string) (loadedSet, Findings, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return loadedSet{}, nil, err
	}
	sum := sha256.Sum256(data)
	if set, err := readCompiled(CompiledPath(live), sum); err == nil {
		set.File = file
		return loadedSet{set, true}, nil, nil
	}
	set, findings := Parse(file, data)
	if set == nil || findings.HasErrors() {
		// Any error makes the file invalid, exactly as check reports it:
		// a half-understood file (a misread die_quietly, an action typo)
		// must not route mail while the last valid one can.
		var msgs []string
		for _, f := range findings.Errors() {
			msgs = append(msgs, f.String())
		}
		return loadedSet{}, findings, fmt.Errorf("invalid rule file: %s", strings.Join(msgs, "; "))
	}
	return loadedSet{set, false}, findings, nil
}

// Install validates data and, only if it has no errors, atomically replaces
// the rule file at path and refreshes its last-valid snapshot and compiled
// form. Deep checks (alias loops, routing tests) are the caller's (see
// package check).
func Install(path string, data []byte) error {
	set, findings := Parse(path, data)
	if set == nil || findings.HasErrors() {
		return fmt.Errorf("not installed: %w", findings.Err())
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return err
	}
	if err := atomicfile.Write(LastValidPath(path), data, 0o644); err != nil {
		return err
	}
	return Compile(path, data)
}
