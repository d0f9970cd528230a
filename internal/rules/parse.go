package rules

import (
	"errors"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// expansionBudget caps how many YAML nodes one parse may visit once aliases
// are expanded. A 10,000-alias file visits well under 1e6; a billion-laughs
// bomb would visit 1e9.
const expansionBudget = 2_000_000

var errBudget = errors.New("YAML alias expansion exceeds the limit (an alias bomb?)")

// Parse compiles a rule file. It returns every finding; the Set is nil when
// a fatal error makes the file unusable for routing.
func Parse(file string, data []byte) (*Set, Findings) {
	p := &parser{file: file, budget: expansionBudget, actions: map[*yaml.Node]*Action{}, inProgress: map[*yaml.Node]bool{}}
	set := p.parse(data)
	if p.fatal {
		return nil, p.findings
	}
	return set, p.findings
}

type parser struct {
	file       string
	findings   Findings
	fatal      bool
	budget     int
	actions    map[*yaml.Node]*Action // anchored actions compile once
	inProgress map[*yaml.Node]bool    // onerror recursion through anchors
}

func (p *parser) add(sev Severity, n *yaml.Node, path, format string, args ...any) {
	f := Finding{File: p.file, Path: path, Severity: sev, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		f.Line, f.Col = n.Line, n.Column
	}
	p.findings = append(p.findings, f)
}

func (p *parser) warn(n *yaml.Node, path, format string, args ...any) {
	p.add(Warning, n, path, format, args...)
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	p.add(Error, n, path, format, args...)
}

// fatalf records an error that makes the whole file unusable.
func (p *parser) fatalf(n *yaml.Node, path, format string, args ...any) {
	p.fatal = true
	p.add(Error, n, path, format, args...)
}

func posOf(n *yaml.Node) Pos { return Pos{Line: n.Line, Col: n.Column} }

// spend charges the expansion budget; false once it is exhausted.
func (p *parser) spend() bool {
	if p.budget <= 0 {
		return false
	}
	p.budget--
	return p.budget > 0
}

// resolve follows YAML aliases to the node they name.
func (p *parser) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		p.spend()
		n = n.Alias
	}
	return n
}

type pair struct {
	key, val *yaml.Node
}

// pairs returns a mapping's entries with << merge keys applied: explicit keys
// win over merged ones, and earlier merge sources win over later ones, as in
// YAML 1.1. A duplicate explicit key keeps the last value, as Ruby does.
func (p *parser) pairs(n *yaml.Node, where string) ([]pair, error) {
	var out []pair
	index := map[string]int{}
	put := func(k, v *yaml.Node, override bool) {
		id := k.Tag + "\x00" + k.Value
		if k.Kind != yaml.ScalarNode {
			id = fmt.Sprintf("%p", k)
		}
		if i, ok := index[id]; ok {
			if override {
				out[i] = pair{k, v}
			}
			return
		}
		index[id] = len(out)
		out = append(out, pair{k, v})
	}
	var merge func(m *yaml.Node, depth int) error
	merge = func(m *yaml.Node, depth int) error {
		m = p.resolve(m)
		if depth > 50 {
			return fmt.Errorf("merge (<<) nested too deeply")
		}
		switch m.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(m.Content); i += 2 {
				if !p.spend() {
					return errBudget
				}
				k, v := p.resolve(m.Content[i]), m.Content[i+1]
				if k.Tag == "!!merge" {
					if err := merge(v, depth+1); err != nil {
						return err
					}
					continue
				}
				put(k, v, false)
			}
		case yaml.SequenceNode:
			for _, s := range m.Content {
				if err := merge(s, depth+1); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("merge key << wants a mapping or a list of mappings")
		}
		return nil
	}
	var merges []*yaml.Node
	var dups []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !p.spend() {
			return nil, errBudget
		}
		k, v := p.resolve(n.Content[i]), n.Content[i+1]
		if k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		id := k.Tag + "\x00" + k.Value
		if _, ok := index[id]; ok && k.Kind == yaml.ScalarNode {
			dups = append(dups, k)
		}
		put(k, v, true)
	}
	for _, d := range dups {
		p.warn(d, where, "key %q is defined more than once; the last one wins", d.Value)
	}
	for _, m := range merges {
		if err := merge(m, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// yaml11Bool reads the YAML 1.1 booleans Ruby's Psych understands.
func yaml11Bool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "yes", "true", "on":
		return true, true
	case "no", "false", "off":
		return false, true
	}
	return false, false
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// stringKey returns the key as Ruby would see a String key. Plain scalars
// that YAML 1.1 reads as numbers, booleans, null or timestamps are not
// strings in the original, so they never match an address.
func stringKey(k *yaml.Node) (string, bool) {
	if k.Kind != yaml.ScalarNode {
		return "", false
	}
	if k.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return k.Value, true
	}
	if k.Tag != "!!str" {
		return "", false
	}
	if _, isBool := yaml11Bool(k.Value); isBool {
		return "", false
	}
	return k.Value, true
}

// scalarString returns a string-ish scalar the way Ruby would use it in an
// argument list (numbers become their text).
func scalarString(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return "", false
	}
	return n.Value, true
}

// truthy reads a boolean with Ruby's rules: null and false are false, the
// YAML 1.1 words are what they say, anything else is true (with a warning).
func (p *parser) truthy(n *yaml.Node, where string) bool {
	n = p.resolve(n)
	if isNull(n) {
		return false
	}
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!bool" || n.Style == 0 || n.Style == yaml.TaggedStyle {
			if v, ok := yaml11Bool(n.Value); ok {
				return v
			}
		}
	}
	p.warn(n, where, "not a boolean (want true/false or yes/no); treated as true, as the original did")
	return true
}

func (p *parser) parse(data []byte) *Set {
	set := &Set{File: p.file, Aliases: map[string]*Entry{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.fatalYAML(err)
		return nil
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		// An empty file routes nothing: every message would be rescued.
		p.warn(nil, "", "the rule file is empty")
		return set
	}
	root := p.resolve(doc.Content[0])
	if isNull(root) {
		p.warn(root, "", "the rule file is empty")
		return set
	}
	if root.Kind != yaml.MappingNode {
		p.fatalf(root, "", "the rule file must be a mapping of top-level keys (extension, rematch, aliases, default, rescue, ...)")
		return nil
	}
	top, err := p.pairs(root, "")
	if err != nil {
		p.fatalf(root, "", "%v", err)
		return nil
	}
	var extNode, extsNode *yaml.Node
	for _, kv := range top {
		name, _ := stringKey(kv.key)
		v := p.resolve(kv.val)
		switch name {
		case "extension":
			extNode = kv.val
		case "extensions":
			extsNode = kv.val
		case "rematch":
			p.parseRematch(set, v)
		case "aliases":
			p.parseAliases(set, v)
		case "default":
			if isNull(v) {
				p.warn(v, "default", "default is null: it counts as absent")
				continue
			}
			set.Default = p.parseEntry("default", "default", v)
		case "rescue":
			if isNull(v) {
				continue
			}
			s, ok := scalarString(v)
			if !ok || v.Tag != "!!str" {
				p.errorf(v, "rescue", "want a directory path (a string)")
				continue
			}
			if !path.IsAbs(s) {
				p.errorf(v, "rescue", "rescue directory %q must be an absolute path", s)
				continue
			}
			set.Rescue = s
		case "rescue_json":
			set.RescueJSON = p.truthy(v, "rescue_json")
		case "die_quietly":
			set.DieQuietly = p.truthy(v, "die_quietly")
		case "forward_sender":
			s, ok := scalarString(v)
			if !ok || !strings.Contains(s, "@") {
				p.errorf(v, "forward_sender", "want an address such as postmaster@example.com")
				continue
			}
			set.ForwardSender = s
		case "tests":
			p.parseTests(set, v)
		default:
			// Other keys (e.g. anchors: holding YAML anchors) are ignored, as
			// in the original.
		}
	}
	if extNode != nil && extsNode != nil {
		p.warn(extsNode, "extensions", "both extension and extensions are set; extension wins")
	}
	if extNode == nil && extsNode != nil {
		extNode = extsNode
	}
	if extNode != nil {
		p.parseExtension(set, p.resolve(extNode))
	}
	return set
}

func (p *parser) fatalYAML(err error) {
	msg := err.Error()
	line := 0
	// yaml.v3 says "yaml: line N: ..." for syntax errors.
	if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line = n
				msg = strings.TrimSpace(rest[i+1:])
				// yaml.v3 counts parser (not scanner) error lines from 0.
				if strings.HasPrefix(msg, "did not find expected") || strings.HasPrefix(msg, "found ") && strings.Contains(msg, "tag") {
					line++
				}
			}
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	p.fatal = true
	if line == 0 {
		line = 1 // yaml.v3 gives no line for encoding errors
	}
	f := Finding{File: p.file, Severity: Error, Msg: "YAML syntax: " + msg, Pos: Pos{Line: line, Col: 1}}
	p.findings = append(p.findings, f)
}

func (p *parser) parseExtension(set *Set, v *yaml.Node) {
	if isNull(v) {
		return
	}
	if v.Kind != yaml.ScalarNode {
		p.fatalf(v, "extension", "want a regexp string such as \"\\\\+\"")
		return
	}
	pat, err := CompilePattern(v.Value)
	if err != nil {
		p.fatalf(v, "extension", "%v", err)
		return
	}
	if pat.CanMatchEmpty() {
		p.fatalf(v, "extension", "regexp %q can match the empty string, so it could never shorten a local part (the original loops forever on it)", v.Value)
		return
	}
	set.Extension = pat
}

func (p *parser) parseRematch(set *Set, v *yaml.Node) {
	if isNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		p.fatalf(v, "rematch", "want a mapping of regexp: address")
		return
	}
	kvs, err := p.pairs(v, "rematch")
	if err != nil {
		p.fatalf(v, "rematch", "%v", err)
		return
	}
	for _, kv := range kvs {
		where := fmt.Sprintf("rematch.%q", kv.key.Value)
		if kv.key.Kind != yaml.ScalarNode {
			p.fatalf(kv.key, "rematch", "a rematch key must be a regexp string")
			continue
		}
		pat, err := CompilePattern(kv.key.Value)
		if err != nil {
			p.fatalf(kv.key, where, "%v", err)
			continue
		}
		t := p.resolve(kv.val)
		target, ok := scalarString(t)
		if !ok || target == "" {
			p.fatalf(t, where, "want the replacement address (a string)")
			continue
		}
		set.Rematch = append(set.Rematch, Rematch{Pattern: pat, Target: target, Pos: posOf(kv.key)})
	}
}

func (p *parser) parseAliases(set *Set, v *yaml.Node) {
	if isNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		p.fatalf(v, "aliases", "want a mapping of address: actions")
		return
	}
	kvs, err := p.pairs(v, "aliases")
	if err != nil {
		p.fatalf(v, "aliases", "%v", err)
		return
	}
	for _, kv := range kvs {
		key, ok := stringKey(kv.key)
		if !ok {
			p.warn(kv.key, "aliases", "key %s is not a string in YAML (%s), so it never matches an address, as in the original; quote it: \"%s\"", kv.key.Value, strings.TrimPrefix(kv.key.Tag, "!!"), kv.key.Value)
			continue
		}
		where := fmt.Sprintf("aliases.%q", key)
		if key != strings.ToLower(key) {
			p.warn(kv.key, where, "key has uppercase letters; recipients are lowercased before lookup, so it never matches (write it in lowercase)")
		}
		val := p.resolve(kv.val)
		if isNull(val) || (val.Kind == yaml.ScalarNode && val.Tag == "!!bool" && val.Value == "false") {
			p.warn(kv.val, where, "value is null: the key counts as absent, as in the original")
			continue
		}
		set.Aliases[key] = p.parseEntry(key, where, val)
	}
}

// parseEntry reads an action list: a sequence, or one mapping.
func (p *parser) parseEntry(key, where string, v *yaml.Node) *Entry {
	e := &Entry{Key: key, Pos: posOf(v), Actions: []*Action{}}
	switch v.Kind {
	case yaml.SequenceNode:
		for i, item := range v.Content {
			e.Actions = append(e.Actions, p.parseAction(fmt.Sprintf("%s[%d]", where, i), item, 0))
		}
	case yaml.MappingNode:
		e.Actions = append(e.Actions, p.parseAction(where, v, 0))
	default:
		msg := "want an action (a mapping with type:) or a list of actions"
		p.errorf(v, where, "%s", msg)
		e.Actions = append(e.Actions, &Action{Problem: msg, Pos: posOf(v)})
	}
	return e
}

var actionKeys = map[string][]string{
	TypeMaildir: {"value", "junk"},
	TypePipe:    {"cmd", "args", "timeout"},
	TypeForward: {"value"},
	TypeDump:    {"value"},
	TypeNothing: {},
	TypeDiscard: {},
	TypeAlias:   {"value"},
}

var keyHints = map[string]string{"arg": "args", "argv": "args", "command": "cmd", "on_error": "onerror", "onerr": "onerror", "values": "value", "dir": "value", "path": "value", "to": "value"}

func (p *parser) parseAction(where string, n *yaml.Node, depth int) *Action {
	orig := n
	n = p.resolve(n)
	if cached, ok := p.actions[n]; ok {
		return cached
	}
	a := &Action{Pos: posOf(orig)}
	problem := func(node *yaml.Node, path, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		p.errorf(node, path, "%s", msg)
		if a.Problem == "" {
			a.Problem = fmt.Sprintf("%s:%d:%d: %s: %s", p.file, node.Line, node.Column, path, msg)
		}
	}
	if n.Kind != yaml.MappingNode {
		problem(n, where, "want an action: a mapping with type: (maildir, pipe, forward, dump, nothing, discard, alias)")
		return a
	}
	if p.inProgress[n] || depth > 50 {
		problem(n, where+".onerror", "onerror chain cycles back to itself")
		return a
	}
	p.inProgress[n] = true
	defer delete(p.inProgress, n)
	kvs, err := p.pairs(n, where)
	if err != nil {
		problem(n, where, "%v", err)
		return a
	}
	fields := map[string]pair{}
	for _, kv := range kvs {
		name, ok := stringKey(kv.key)
		if !ok {
			problem(kv.key, where, "action key %s is not a string", kv.key.Value)
			continue
		}
		fields[name] = kv
	}
	typ, ok := fields["type"]
	if !ok {
		problem(n, where, "missing type: (want maildir, pipe, forward, dump, nothing, discard or alias)")
		return a
	}
	tv := p.resolve(typ.val)
	a.Type, _ = scalarString(tv)
	allowed, known := actionKeys[a.Type]
	switch {
	case a.Type == "nouser":
		problem(tv, where+".type", "type nouser was removed from AltPostLocal because its exit 67 made Postfix bounce; use nothing or discard to drop, or route to a mailbox")
	case !known:
		problem(tv, where+".type", "unknown action %q (want maildir, pipe, forward, dump, nothing, discard or alias)", a.Type)
	}
	if known {
		ok := map[string]bool{"type": true, "onerror": true}
		for _, k := range allowed {
			ok[k] = true
		}
		for name, kv := range fields {
			if ok[name] {
				continue
			}
			hint := ""
			if h := keyHints[name]; h != "" && ok[h] {
				hint = fmt.Sprintf(" (did you mean %s?)", h)
			}
			problem(kv.key, where+"."+name, "unknown key %q for a %s action%s", name, a.Type, hint)
		}
	}
	str := func(name string, required bool) (string, *yaml.Node) {
		kv, ok := fields[name]
		if !ok || isNull(p.resolve(kv.val)) {
			if required {
				problem(n, where, "missing %s: (required by a %s action)", name, a.Type)
			}
			return "", nil
		}
		v := p.resolve(kv.val)
		s, ok := scalarString(v)
		if !ok {
			problem(v, where+"."+name, "want a string")
			return "", nil
		}
		return s, v
	}
	switch a.Type {
	case TypeMaildir, TypeDump:
		s, v := str("value", true)
		if v != nil && !path.IsAbs(s) {
			problem(v, where+".value", "%s directory %q must be an absolute path", a.Type, s)
		}
		a.Value = s
		if kv, ok := fields["junk"]; ok && a.Type == TypeMaildir {
			a.Junk = p.truthy(kv.val, where+".junk")
		}
	case TypeAlias:
		a.Value, _ = str("value", true)
	case TypeForward:
		kv, ok := fields["value"]
		v := (*yaml.Node)(nil)
		if ok {
			v = p.resolve(kv.val)
		}
		switch {
		case v == nil || isNull(v):
			problem(n, where, "missing value: (the address or list of addresses to forward to)")
		case v.Kind == yaml.ScalarNode:
			a.Addresses = []string{v.Value}
		case v.Kind == yaml.SequenceNode:
			for i, item := range v.Content {
				item = p.resolve(item)
				s, ok := scalarString(item)
				if !ok || s == "" {
					problem(item, fmt.Sprintf("%s.value[%d]", where, i), "want an address")
					continue
				}
				a.Addresses = append(a.Addresses, s)
			}
			if len(v.Content) == 0 {
				problem(v, where+".value", "empty list: nothing to forward to")
			}
		default:
			problem(v, where+".value", "want an address or a list of addresses")
		}
		for _, addr := range a.Addresses {
			if strings.HasPrefix(addr, "-") {
				problem(v, where+".value", "address %q starts with '-'", addr)
			}
		}
	case TypePipe:
		a.Cmd, _ = str("cmd", true)
		if kv, ok := fields["args"]; ok {
			v := p.resolve(kv.val)
			switch {
			case isNull(v):
			case v.Kind == yaml.SequenceNode:
				for i, item := range v.Content {
					item = p.resolve(item)
					s, ok := scalarString(item)
					if !ok {
						problem(item, fmt.Sprintf("%s.args[%d]", where, i), "want a string")
						continue
					}
					a.Args = append(a.Args, s)
				}
			default:
				problem(v, where+".args", "want a list of arguments, e.g. [\"${recipient}\"]")
			}
		}
		if kv, ok := fields["timeout"]; ok {
			v := p.resolve(kv.val)
			if !isNull(v) {
				f, err := strconv.ParseFloat(v.Value, 64)
				if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") || err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f > 1e7 {
					problem(v, where+".timeout", "want a number of seconds (0 or absent means none), got %q", v.Value)
				} else {
					a.Timeout = time.Duration(f * float64(time.Second))
				}
			}
		}
	}
	if kv, ok := fields["onerror"]; ok {
		v := p.resolve(kv.val)
		if !isNull(v) {
			a.OnError = p.parseAction(where+".onerror", kv.val, depth+1)
		}
	}
	p.actions[n] = a
	return a
}

func (p *parser) parseTests(set *Set, v *yaml.Node) {
	if isNull(v) {
		return
	}
	if v.Kind != yaml.SequenceNode {
		p.errorf(v, "tests", "want a list of {address: ..., expect: ...}")
		return
	}
	for i, item := range v.Content {
		where := fmt.Sprintf("tests[%d]", i)
		item = p.resolve(item)
		if item.Kind != yaml.MappingNode {
			p.errorf(item, where, "want {address: ..., expect: ...}")
			continue
		}
		kvs, err := p.pairs(item, where)
		if err != nil {
			p.errorf(item, where, "%v", err)
			continue
		}
		t := Test{Pos: posOf(item)}
		for _, kv := range kvs {
			name, _ := stringKey(kv.key)
			val := p.resolve(kv.val)
			s, ok := scalarString(val)
			switch name {
			case "address":
				t.Address = s
			case "sender":
				t.Sender = s
			case "expect":
				t.Expect = s
			default:
				p.errorf(kv.key, where+"."+name, "unknown key (want address, expect, sender)")
				continue
			}
			if !ok {
				p.errorf(val, where+"."+name, "want a string")
			}
		}
		if t.Address == "" || t.Expect == "" {
			p.errorf(item, where, "a test needs address: and expect:")
			continue
		}
		set.Tests = append(set.Tests, t)
	}
}
