package rules

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"
	"unicode/utf8"
)

// Pattern is a compiled regexp from the rule file, kept with its source so
// the compiled form and explain can show it.
type Pattern struct {
	Source   string
	re       *regexp.Regexp
	anchored *regexp.Regexp // ^(?:Source), compiled on first Rindex (only the extension needs it)
}

// CompilePattern compiles src with Go's RE2 syntax. The error explains
// constructs that only the Ruby original (Onigmo) understood.
func CompilePattern(src string) (*Pattern, error) {
	re, err := regexp.Compile(src)
	if err != nil {
		if hint := rubyOnly(src); hint != "" {
			return nil, fmt.Errorf("regexp %q uses %s, which Ruby's Onigmo accepted but Go's RE2 syntax does not support; rewrite it without that construct", src, hint)
		}
		return nil, fmt.Errorf("regexp %q does not compile (Go RE2 syntax; lookaround and backreferences are unsupported): %v", src, err)
	}
	return &Pattern{Source: src, re: re}, nil
}

// MatchString reports whether the pattern matches anywhere in s (Ruby's ===).
func (p *Pattern) MatchString(s string) bool { return p.re.MatchString(s) }

// Rindex is Ruby's String#rindex(regexp): the greatest byte offset i such that
// the pattern matches starting at i, or -1. Offsets are tried only at rune
// boundaries, as Ruby counts characters.
func (p *Pattern) Rindex(s string) int {
	if p.anchored == nil {
		a, err := regexp.Compile(`^(?:` + p.Source + `)`)
		if err != nil { // cannot happen when Source compiled alone
			return -1
		}
		p.anchored = a
	}
	for i := len(s); i >= 0; i-- {
		if i < len(s) && !utf8.RuneStart(s[i]) {
			continue
		}
		if p.anchored.MatchString(s[i:]) {
			return i
		}
	}
	return -1
}

// CanMatchEmpty reports whether the pattern can match the empty string at
// some position (a zero-width assertion counts). Such an extension would
// never shorten a local part: the original loops forever on it.
func (p *Pattern) CanMatchEmpty() bool {
	re, err := syntax.Parse(p.Source, syntax.Perl)
	if err != nil {
		return true
	}
	return nullable(re.Simplify())
}

func nullable(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpNoMatch, syntax.OpLiteral, syntax.OpCharClass, syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		return re.Op == syntax.OpLiteral && len(re.Rune) == 0
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpStar, syntax.OpQuest:
		return true
	case syntax.OpPlus, syntax.OpCapture:
		return nullable(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min == 0 || nullable(re.Sub[0])
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if !nullable(s) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if nullable(s) {
				return true
			}
		}
		return false
	}
	return true // unknown op: be safe
}

// rubyConstructs is built on first use: the agent never needs it, and
// every regexp compiled at start-up delays every delivery.
var rubyConstructs = sync.OnceValue(func() []rubyConstruct {
	return []rubyConstruct{
		{regexp.MustCompile(`\(\?<?[=!]`), "lookaround ((?=...), (?!...), (?<=...), (?<!...))"},
		{regexp.MustCompile(`\\[1-9]|\\k<`), "a backreference (\\1, \\k<name>)"},
		{regexp.MustCompile(`[*+?}]\+`), "a possessive quantifier (*+, ++, ?+)"},
		{regexp.MustCompile(`\(\?>`), "an atomic group ((?>...))"},
		{regexp.MustCompile(`\\[hHRXZG]`), "a Ruby-only escape (\\h, \\R, \\X, \\Z, \\G)"},
		{regexp.MustCompile(`\(\?~`), "an absence operator ((?~...))"},
	}
})

type rubyConstruct struct {
	re   *regexp.Regexp
	name string
}

func rubyOnly(src string) string {
	var hits []string
	for _, c := range rubyConstructs() {
		if c.re.MatchString(src) {
			hits = append(hits, c.name)
		}
	}
	return strings.Join(hits, " and ")
}
