package yamlconf

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// parserErrors are the yaml.v3 messages raised by its parser rather than
// its scanner: yaml.v3 reports their line counting from 0, so one too early.
var parserErrors = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found undefined tag handle":             true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

var unknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// syntaxError turns a yaml.v3 error ("yaml: line 3: ...") into a
// diagnostic with the line the problem is on and, where it can be told,
// the column: the unclosed bracket of a flow collection, the alias naming
// an unknown anchor, else the line's first character.
func syntaxError(file string, data []byte, err error) Diagnostic {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ": "); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, rest[i+2:]
				if parserErrors[msg] {
					line++
				}
			}
		}
	}
	lines := strings.Split(string(data), "\n")
	line = min(max(line, 1), len(lines))
	col := 0
	switch {
	case msg == "did not find expected ',' or '}'":
		line, col = openBracket(lines, line, '{', '}')
	case msg == "did not find expected ',' or ']'":
		line, col = openBracket(lines, line, '[', ']')
	case unknownAnchor.MatchString(msg):
		name := unknownAnchor.FindStringSubmatch(msg)[1]
		line, col = find(lines, "*"+name)
	}
	if col == 0 {
		col = len(lines[line-1]) - len(strings.TrimLeft(lines[line-1], " \t")) + 1
	}
	return Diagnostic{File: file, Pos: Pos{Line: line, Col: col}, Severity: Error, Msg: "YAML syntax: " + msg}
}

// openBracket finds the flow collection left open at or before line: the
// last bracket on the line that is not closed on it (quotes and comments
// skipped), searching earlier lines when the line has none. It returns
// line unchanged and column 0 when there is none.
func openBracket(lines []string, line int, open, closing byte) (int, int) {
	for l := line; l >= 1; l-- {
		var stack []int
		s := lines[l-1]
		var quote byte
	scan:
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case quote != 0:
				if c == quote {
					quote = 0
				} else if c == '\\' && quote == '"' {
					i++
				}
			case c == '"' || c == '\'':
				quote = c
			case c == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
				break scan
			case c == open:
				stack = append(stack, i)
			case c == closing && len(stack) > 0:
				stack = stack[:len(stack)-1]
			}
		}
		if len(stack) > 0 {
			return l, utf8.RuneCountInString(s[:stack[len(stack)-1]]) + 1
		}
	}
	return line, 0
}

// find returns the first line and column of s, or line 1, column 0.
func find(lines []string, s string) (int, int) {
	for i, l := range lines {
		if j := strings.Index(l, s); j >= 0 {
			return i + 1, utf8.RuneCountInString(l[:j]) + 1
		}
	}
	return 1, 0
}
