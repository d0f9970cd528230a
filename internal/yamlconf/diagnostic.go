package yamlconf

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Severity says whether a diagnostic makes the file unfit to use.
type Severity int

// Error is the zero value: a diagnostic nobody classified must not pass
// as a mere warning.
const (
	Error Severity = iota
	Warning
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// MarshalText makes JSON output read "error"/"warning".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Pos is a position in a file (1-based, as editors show it; 0 = unknown).
type Pos struct {
	Line int `json:"line"`
	Col  int `json:"col"`
}

// PosOf returns the position of a YAML node (zero for nil).
func PosOf(n *yaml.Node) Pos {
	if n == nil {
		return Pos{}
	}
	return Pos{Line: n.Line, Col: n.Column}
}

// Diagnostic is one problem found in a configuration file, or in the
// environment variable (Env) that overrode one of its values.
type Diagnostic struct {
	File     string   `json:"file"`
	Pos               // of the offending YAML node
	Env      string   `json:"env,omitempty"`  // QUIETMX_* variable the value came from; then File and Pos are unset
	Path     string   `json:"path,omitempty"` // e.g. aliases."foo@example.com"[1].type, mailboxes[0].login
	Severity Severity `json:"severity"`
	Msg      string   `json:"message"`
}

// String formats the diagnostic as FILE:LINE:COL: [warning: ]PATH: msg,
// or VAR: [warning: ]msg when the value came from the environment.
func (d Diagnostic) String() string {
	var b strings.Builder
	switch {
	case d.Env != "":
		b.WriteString(d.Env)
		b.WriteString(": ")
	case d.File != "":
		b.WriteString(d.File)
		if d.Line > 0 {
			fmt.Fprintf(&b, ":%d", d.Line)
			if d.Col > 0 {
				fmt.Fprintf(&b, ":%d", d.Col)
			}
		}
		b.WriteString(": ")
	}
	if d.Severity == Warning {
		b.WriteString("warning: ")
	}
	if d.Path != "" && d.Env == "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Error makes a Diagnostic usable as an error (the spec's Load joins them).
func (d Diagnostic) Error() string { return d.String() }

// Diagnostics is every problem found in one file, in the order found.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Errors returns only the errors.
func (ds Diagnostics) Errors() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == Error {
			out = append(out, d)
		}
	}
	return out
}

// Err joins the errors into one error, or returns nil when there are none.
func (ds Diagnostics) Err() error {
	var errs []error
	for _, d := range ds {
		if d.Severity == Error {
			errs = append(errs, d)
		}
	}
	return errors.Join(errs...)
}
