// Package yamlconf is the one YAML layer under the appliance spec and the
// AltPostLocal rule files: it decodes bytes into nodes with positioned
// syntax errors, walks them with one alias-expansion budget, applies <<
// merge keys, and holds the policies both files share: duplicate keys,
// booleans, unknown keys with a did-you-mean, and one Diagnostic type.
//
// POLICIES
//   - A key defined twice in one mapping is a warning and the last one
//     wins, as Postfix treats a repeated main.cf parameter and as Ruby's
//     YAML does (the original AltPostLocal's files keep working).
//   - A boolean is exactly one of the unquoted YAML 1.1 words true, false,
//     yes, no, on, off, in any case; null (an empty value) is false.
//     Anything else (a quoted "false", 0, 1, y, a list) is an error: a
//     misread boolean such as die_quietly could lose mail.
//   - << merges a mapping or a list of mappings: explicit keys win, and an
//     earlier merge source wins over a later one (YAML 1.1).
//
// SECURITY
// Every alias followed and every mapping entry visited, merged ones
// included, is charged to one budget (ExpansionBudget), so an alias bomb
// ("billion laughs") is refused in milliseconds instead of exhausting
// memory or time.
package yamlconf

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// ExpansionBudget caps how many YAML nodes one file may visit once aliases
// and merges are expanded. A 10,000-alias rule file visits well under a
// tenth of it; a billion-laughs bomb would visit 1e9.
const ExpansionBudget = 1_000_000

// ErrBudget is returned once the expansion budget is spent.
var ErrBudget = errors.New("YAML alias expansion exceeds the limit (an alias bomb?)")

// maxMergeDepth caps << nesting (merge sources that merge others).
const maxMergeDepth = 50

// Doc reads one YAML file and collects its diagnostics.
type Doc struct {
	File  string
	Diags Diagnostics

	budget int
	walked map[*yaml.Node]bool // mappings whose duplicate keys were reported
}

// New returns a Doc for file (the name diagnostics carry).
func New(file string) *Doc {
	return &Doc{File: file, budget: ExpansionBudget, walked: map[*yaml.Node]bool{}}
}

// Add records a diagnostic at node n (nil: no position).
func (d *Doc) Add(sev Severity, n *yaml.Node, path, format string, args ...any) {
	d.Diags = append(d.Diags, Diagnostic{File: d.File, Pos: PosOf(n), Path: path, Severity: sev, Msg: fmt.Sprintf(format, args...)})
}

// Errorf records an error at node n.
func (d *Doc) Errorf(n *yaml.Node, path, format string, args ...any) {
	d.Add(Error, n, path, format, args...)
}

// Warnf records a warning at node n.
func (d *Doc) Warnf(n *yaml.Node, path, format string, args ...any) {
	d.Add(Warning, n, path, format, args...)
}

// Decode parses data and returns its root node, aliases resolved, or nil
// for an empty document (nothing, only comments, or null). On a syntax
// error it records the error with its line and column and returns false.
func (d *Doc) Decode(data []byte) (root *yaml.Node, ok bool) {
	var doc yaml.Node
	if err := unmarshal(data, &doc); err != nil {
		d.Diags = append(d.Diags, syntaxError(d.File, data, err))
		return nil, false
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, true
	}
	root = d.Resolve(doc.Content[0])
	if IsNull(root) {
		return nil, true
	}
	return root, true
}

// unmarshal is yaml.Unmarshal, with a panic in the decoder (a bug there)
// turned into an error: a file that crashes the parser is invalid, it
// must not crash the delivery agent.
func unmarshal(data []byte, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: cannot parse: %v", r)
		}
	}()
	return yaml.Unmarshal(data, doc)
}

// Spend charges one node to the expansion budget; false once it is spent.
func (d *Doc) Spend() bool {
	if d.budget <= 0 {
		return false
	}
	d.budget--
	return d.budget > 0
}

// Resolve follows YAML aliases to the node they name, charging the budget.
func (d *Doc) Resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		d.Spend()
		n = n.Alias
	}
	return n
}

// IsNull reports whether n is absent or a YAML null (an empty value).
func IsNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// Pair is one mapping entry. Key is resolved; Val may be an alias.
type Pair struct {
	Key, Val *yaml.Node
}

// keyID identifies a key for duplicate and merge purposes: a scalar by its
// tag and text (so "123" and 123 differ, as in Ruby), anything else by node.
func keyID(k *yaml.Node) string {
	if k.Kind == yaml.ScalarNode {
		return k.Tag + "\x00" + k.Value
	}
	return fmt.Sprintf("%p", k)
}

// Pairs returns the entries of mapping n (path names it in diagnostics) in
// file order, with << merge keys applied after the explicit keys: an
// explicit key wins over a merged one, and an earlier merge source over a
// later one. A key given twice explicitly draws a warning, and the last
// one wins. The error is ErrBudget, or a << that merges no mapping.
func (d *Doc) Pairs(n *yaml.Node, path string) ([]Pair, error) {
	return d.pairs(n, path, 0)
}

func (d *Doc) pairs(n *yaml.Node, path string, depth int) ([]Pair, error) {
	if depth > maxMergeDepth {
		return nil, fmt.Errorf("merge (<<) nested too deeply")
	}
	var out []Pair
	index := map[string]int{}
	var merges []*yaml.Node
	// A mapping walked again (an anchor merged or aliased in several
	// places) reports its duplicate keys once.
	warnDups := !d.walked[n]
	d.walked[n] = true
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !d.Spend() {
			return nil, ErrBudget
		}
		k, v := d.Resolve(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		id := keyID(k)
		if j, dup := index[id]; dup {
			if warnDups {
				d.Warnf(k, path, "key %q is defined more than once (first at line %d); the last one wins", k.Value, out[j].Key.Line)
			}
			out[j] = Pair{k, v}
			continue
		}
		index[id] = len(out)
		out = append(out, Pair{k, v})
	}
	var merge func(m *yaml.Node) error
	merge = func(m *yaml.Node) error {
		m = d.Resolve(m)
		switch {
		case m.Kind == yaml.MappingNode:
			src, err := d.pairs(m, path, depth+1)
			if err != nil {
				return err
			}
			for _, kv := range src {
				if _, taken := index[keyID(kv.Key)]; !taken {
					index[keyID(kv.Key)] = len(out)
					out = append(out, kv)
				}
			}
		case m.Kind == yaml.SequenceNode:
			for _, s := range m.Content {
				if s = d.Resolve(s); s.Kind != yaml.MappingNode {
					return fmt.Errorf("merge key << wants a mapping or a list of mappings")
				}
				if err := merge(s); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("merge key << wants a mapping or a list of mappings")
		}
		return nil
	}
	for _, m := range merges {
		if err := merge(m); err != nil {
			return nil, err
		}
	}
	return out, nil
}
