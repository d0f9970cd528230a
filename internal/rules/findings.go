package rules

import (
	"errors"
	"fmt"
	"strings"
)

// Severity says whether a finding makes the rule file unfit to install.
type Severity int

const (
	Warning Severity = iota
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// MarshalText makes --json output read "error"/"warning".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Pos is a position in the rule file (1-based, as YAML editors show it).
type Pos struct {
	Line int `json:"line"`
	Col  int `json:"col"`
}

// Finding is one problem found in a rule file.
type Finding struct {
	File     string   `json:"file"`
	Pos               // line and column of the offending YAML node
	Path     string   `json:"path,omitempty"` // e.g. aliases."foo@example.com"[1].type
	Severity Severity `json:"severity"`
	Msg      string   `json:"message"`
}

// String formats the finding as FILE:LINE:COL: [warning: ]PATH: message.
func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(f.File)
	if f.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", f.Line, f.Col)
	}
	b.WriteString(": ")
	if f.Severity == Warning {
		b.WriteString("warning: ")
	}
	if f.Path != "" {
		b.WriteString(f.Path)
		b.WriteString(": ")
	}
	b.WriteString(f.Msg)
	return b.String()
}

// Findings is every problem found in one rule file, in file order.
type Findings []Finding

// HasErrors reports whether any finding is an error.
func (fs Findings) HasErrors() bool {
	for _, f := range fs {
		if f.Severity == Error {
			return true
		}
	}
	return false
}

// Errors returns only the errors.
func (fs Findings) Errors() Findings {
	var out Findings
	for _, f := range fs {
		if f.Severity == Error {
			out = append(out, f)
		}
	}
	return out
}

// Err joins the errors into one error, or returns nil when there are none.
func (fs Findings) Err() error {
	var errs []error
	for _, f := range fs {
		if f.Severity == Error {
			errs = append(errs, errors.New(f.String()))
		}
	}
	return errors.Join(errs...)
}
