package spec

import (
	"strconv"
	"strings"

	"quietmx/internal/yamlconf"
)

// Problem is one thing wrong with the spec: the diagnostic the rule files
// use too (package yamlconf). It names FILE:LINE:COL and the field path,
// or the QUIETMX_* variable (Env) the value came from.
type Problem = yamlconf.Diagnostic

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
