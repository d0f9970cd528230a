package yamlconf

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// BoolWords are the only booleans, case-insensitive and unquoted.
const BoolWords = "true, false, yes, no, on, off"

// BoolWord reads one of the YAML 1.1 boolean words (any case).
func BoolWord(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		return true, true
	case "false", "no", "off":
		return false, true
	}
	return false, false
}

// Bool reads a boolean value: an unquoted true/false/yes/no/on/off in any
// case, or null (false). Anything else is an error naming what was found,
// and ok is false: the caller must not guess (a quoted "false" read as
// true once made die_quietly lose mail).
func (d *Doc) Bool(n *yaml.Node, path string) (value, ok bool) {
	n = d.Resolve(n)
	if IsNull(n) {
		return false, true
	}
	if n.Kind == yaml.ScalarNode && (n.Style == 0 || n.Style == yaml.TaggedStyle && n.Tag == "!!bool") {
		if v, ok := BoolWord(n.Value); ok {
			return v, true
		}
	}
	d.Errorf(n, path, "want true or false (also yes/no, on/off, unquoted), got %s", Describe(n))
	return false, false
}

// Describe names what a node holds, for "want X, got Y" messages.
func Describe(n *yaml.Node) string {
	switch {
	case IsNull(n):
		return "nothing (null)"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
		return fmt.Sprintf("%q (a quoted string)", n.Value)
	case n.Tag == "!!int" || n.Tag == "!!float":
		return n.Value + " (a number)"
	}
	return fmt.Sprintf("%q", n.Value)
}

// Suggest returns the candidate closest to s (case-insensitive edit
// distance at most 2), or "".
func Suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := distance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// UnknownKey records an error for key k of the mapping at path, which is
// none of known: with "did you mean" when one is close, else the list.
func (d *Doc) UnknownKey(k *yaml.Node, path string, known []string) {
	msg := fmt.Sprintf("unknown key %q (want %s)", k.Value, strings.Join(known, ", "))
	if s := Suggest(k.Value, known); s != "" {
		msg = fmt.Sprintf("unknown key %q (did you mean %s?)", k.Value, s)
	}
	d.Errorf(k, Join(path, k.Value), "%s", msg)
}

// Join appends a key to a field path: tls + mode = tls.mode.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
