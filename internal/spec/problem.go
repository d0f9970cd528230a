package spec

import (
	"fmt"
	"strconv"
	"strings"
)

// Problem is one thing wrong with the spec.
type Problem struct {
	File      string // spec file ("" when the value came from the environment or nowhere)
	Line, Col int    // 0 when unknown
	Env       string // the environment variable the value came from, if any
	Path      string // the field, e.g. domains[1] or mailboxes[0].login
	Msg       string
}

// Error formats the problem as FILE:LINE:COL: PATH: msg, or VAR: msg when
// the value came from the environment.
func (p *Problem) Error() string {
	var b strings.Builder
	switch {
	case p.Env != "":
		b.WriteString(p.Env)
		b.WriteString(": ")
	default:
		if p.File != "" {
			b.WriteString(p.File)
			if p.Line > 0 {
				fmt.Fprintf(&b, ":%d", p.Line)
				if p.Col > 0 {
					fmt.Fprintf(&b, ":%d", p.Col)
				}
			}
			b.WriteString(": ")
		}
		if p.Path != "" {
			b.WriteString(p.Path)
			b.WriteString(": ")
		}
	}
	b.WriteString(p.Msg)
	return b.String()
}

// origin is where a value came from: a YAML node or an environment variable.
type origin struct {
	line, col int
	env       string
}

// parent strips the last element of a field path: mailboxes[0].login ->
// mailboxes[0] -> mailboxes -> "".
func parent(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

func index(p string, i int) string { return p + "[" + strconv.Itoa(i) + "]" }
