package rules

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"quietmx/internal/yamlconf"
)

// Parse compiles a rule file. It returns every finding; the Set is nil when
// a fatal error makes the file unusable even for check's deeper tests. Any
// error makes the file invalid for delivery (see Load).
func Parse(file string, data []byte) (*Set, Findings) {
	p := &parser{Doc: yamlconf.New(file), actions: map[*yaml.Node]*Action{}, inProgress: map[*yaml.Node]bool{}}
	set := p.parse(data)
	if p.fatal {
		return nil, p.Diags
	}
	return set, p.Diags
}

type parser struct {
	*yamlconf.Doc
	fatal      bool
	actions    map[*yaml.Node]*Action // anchored actions compile once
	inProgress map[*yaml.Node]bool    // onerror recursion through anchors
}

// fatalf records an error that makes the whole file unusable.
func (p *parser) fatalf(n *yaml.Node, path, format string, args ...any) {
	p.fatal = true
	p.Errorf(n, path, format, args...)
}

func posOf(n *yaml.Node) Pos { return yamlconf.PosOf(n) }

var isNull = yamlconf.IsNull

// topKeys are the rule file's keys. Other keys (anchors:, x-...) are
// ignored, as in the original, unless they are a typo of one of these.
var topKeys = []string{"extension", "extensions", "rematch", "aliases", "default", "rescue", "rescue_json", "die_quietly", "forward_sender", "reject_mode", "tests", "dmarc_fail"}

// rejectModes are reject_mode's values, the default first.
var rejectModes = []string{RejectRefuse, RejectLog}

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
	if _, isBool := yamlconf.BoolWord(k.Value); isBool {
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

// boolean reads a boolean (see yamlconf.Doc.Bool); anything but a real
// one is an error and reads as false, which makes the file invalid anyway.
func (p *parser) boolean(n *yaml.Node, where string) bool {
	v, _ := p.Bool(n, where)
	return v
}

func (p *parser) parse(data []byte) *Set {
	set := &Set{File: p.File, Aliases: map[string]*Entry{}, RejectMode: RejectRefuse}
	root, ok := p.Decode(data)
	if !ok {
		p.fatal = true
		return nil
	}
	if root == nil {
		// An empty file routes nothing: every message would be rescued.
		p.Warnf(nil, "", "the rule file is empty")
		return set
	}
	if root.Kind != yaml.MappingNode {
		p.fatalf(root, "", "the rule file must be a mapping of top-level keys (extension, rematch, aliases, default, rescue, ...)")
		return nil
	}
	top, err := p.Pairs(root, "")
	if err != nil {
		p.fatalf(root, "", "%v", err)
		return nil
	}
	var extNode, extsNode *yaml.Node
	for _, kv := range top {
		name, _ := stringKey(kv.Key)
		v := p.Resolve(kv.Val)
		switch name {
		case "extension":
			extNode = kv.Val
		case "extensions":
			extsNode = kv.Val
		case "rematch":
			p.parseRematch(set, v)
		case "aliases":
			p.parseAliases(set, v)
		case "default":
			if isNull(v) {
				p.Warnf(v, "default", "default is null: it counts as absent")
				continue
			}
			set.Default = p.parseEntry("default", "default", v)
		case "rescue":
			if isNull(v) {
				continue
			}
			s, ok := scalarString(v)
			if !ok || v.Tag != "!!str" {
				p.Errorf(v, "rescue", "want a directory path (a string)")
				continue
			}
			if !path.IsAbs(s) {
				p.Errorf(v, "rescue", "rescue directory %q must be an absolute path", s)
				continue
			}
			set.Rescue = s
		case "rescue_json":
			set.RescueJSON = p.boolean(v, "rescue_json")
		case "die_quietly":
			// Only a real true may drop mail: a misread word must not.
			set.DieQuietly = p.boolean(v, "die_quietly")
		case "forward_sender":
			s, ok := scalarString(v)
			if !ok || !strings.Contains(s, "@") {
				p.Errorf(v, "forward_sender", "want an address such as postmaster@example.com")
				continue
			}
			set.ForwardSender = s
		case "reject_mode":
			p.parseRejectMode(set, v)
		case "tests":
			p.parseTests(set, v)
		case "dmarc_fail":
			p.parseDMARCFail(set, v)
		default:
			// Other keys (e.g. anchors: holding YAML anchors) are ignored, as
			// in the original; a near miss of a real key is a typo that would
			// silently drop that key's rules.
			if yamlconf.Suggest(name, topKeys) != "" {
				p.UnknownKey(kv.Key, "", topKeys)
			}
		}
	}
	if extNode != nil && extsNode != nil {
		p.Warnf(extsNode, "extensions", "both extension and extensions are set; extension wins")
	}
	if extNode == nil && extsNode != nil {
		extNode = extsNode
	}
	if extNode != nil {
		p.parseExtension(set, p.Resolve(extNode))
	}
	return set
}

// parseRejectMode reads reject_mode: refuse (the default) or log. Any other
// value is an error: guessing could refuse mail the owner meant to trial.
func (p *parser) parseRejectMode(set *Set, v *yaml.Node) {
	if isNull(v) {
		return
	}
	s, ok := scalarString(v)
	if ok && slices.Contains(rejectModes, s) {
		set.RejectMode = s
		return
	}
	hint := ""
	if ok {
		if h := yamlconf.Suggest(s, rejectModes); h != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", h)
		}
	}
	p.Errorf(v, "reject_mode", "want refuse or log, got %s%s", yamlconf.Describe(v), hint)
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
	kvs, err := p.Pairs(v, "rematch")
	if err != nil {
		p.fatalf(v, "rematch", "%v", err)
		return
	}
	for _, kv := range kvs {
		where := fmt.Sprintf("rematch.%q", kv.Key.Value)
		if kv.Key.Kind != yaml.ScalarNode {
			p.fatalf(kv.Key, "rematch", "a rematch key must be a regexp string")
			continue
		}
		pat, err := CompilePattern(kv.Key.Value)
		if err != nil {
			p.fatalf(kv.Key, where, "%v", err)
			continue
		}
		t := p.Resolve(kv.Val)
		target, ok := scalarString(t)
		if !ok || target == "" {
			p.fatalf(t, where, "want the replacement address (a string)")
			continue
		}
		set.Rematch = append(set.Rematch, Rematch{Pattern: pat, Target: target, Pos: posOf(kv.Key)})
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
	kvs, err := p.Pairs(v, "aliases")
	if err != nil {
		p.fatalf(v, "aliases", "%v", err)
		return
	}
	for _, kv := range kvs {
		key, ok := stringKey(kv.Key)
		if !ok {
			p.Warnf(kv.Key, "aliases", "key %s is not a string in YAML (%s), so it never matches an address, as in the original; quote it: \"%s\"", kv.Key.Value, strings.TrimPrefix(kv.Key.Tag, "!!"), kv.Key.Value)
			continue
		}
		where := fmt.Sprintf("aliases.%q", key)
		if key != strings.ToLower(key) {
			p.Warnf(kv.Key, where, "key has uppercase letters; recipients are lowercased before lookup, so it never matches (write it in lowercase)")
		}
		val := p.Resolve(kv.Val)
		if isNull(val) || (val.Kind == yaml.ScalarNode && val.Tag == "!!bool" && val.Value == "false") {
			p.Warnf(kv.Val, where, "value is null: the key counts as absent, as in the original")
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
		if len(e.Actions) > 1 {
			for i, a := range e.Actions {
				if a.Type == TypeReject {
					p.Errorf(v.Content[i], fmt.Sprintf("%s[%d]", where, i), "reject must be the only action of its entry: the address is refused at RCPT time, before any action could run")
				}
			}
		}
	case yaml.MappingNode:
		e.Actions = append(e.Actions, p.parseAction(where, v, 0))
	default:
		msg := "want an action (a mapping with type:) or a list of actions"
		p.Errorf(v, where, "%s", msg)
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
	TypeReject:  {"text"},
}

var keyHints = map[string]string{"arg": "args", "argv": "args", "command": "cmd", "on_error": "onerror", "onerr": "onerror", "values": "value", "dir": "value", "path": "value", "to": "value"}

func (p *parser) parseAction(where string, n *yaml.Node, depth int) *Action {
	orig := n
	n = p.Resolve(n)
	if cached, ok := p.actions[n]; ok {
		return cached
	}
	a := &Action{Pos: posOf(orig)}
	problem := func(node *yaml.Node, path, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		p.Errorf(node, path, "%s", msg)
		if a.Problem == "" {
			a.Problem = p.Diags[len(p.Diags)-1].String()
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
	kvs, err := p.Pairs(n, where)
	if err != nil {
		problem(n, where, "%v", err)
		return a
	}
	fields := map[string]yamlconf.Pair{}
	for _, kv := range kvs {
		name, ok := stringKey(kv.Key)
		if !ok {
			problem(kv.Key, where, "action key %s is not a string", kv.Key.Value)
			continue
		}
		fields[name] = kv
	}
	typ, ok := fields["type"]
	if !ok {
		problem(n, where, "missing type: (want maildir, pipe, forward, dump, nothing, discard or alias)")
		return a
	}
	tv := p.Resolve(typ.Val)
	a.Type, _ = scalarString(tv)
	allowed, known := actionKeys[a.Type]
	switch {
	case a.Type == "nouser":
		problem(tv, where+".type", "type nouser was removed from AltPostLocal because its exit 67 made Postfix bounce; use nothing or discard to drop, or route to a mailbox")
	case !known:
		problem(tv, where+".type", "unknown action %q (want maildir, pipe, forward, dump, nothing, discard or alias)", a.Type)
	}
	if known {
		valid := append([]string{"type", "onerror"}, allowed...)
		for name, kv := range fields {
			if slices.Contains(valid, name) {
				continue
			}
			hint := yamlconf.Suggest(name, valid)
			if h := keyHints[name]; h != "" && slices.Contains(valid, h) {
				hint = h // a synonym the edit distance cannot see (command: cmd)
			}
			if hint != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", hint)
			}
			problem(kv.Key, where+"."+name, "unknown key %q for a %s action%s", name, a.Type, hint)
		}
	}
	str := func(name string, required bool) (string, *yaml.Node) {
		kv, ok := fields[name]
		if !ok || isNull(p.Resolve(kv.Val)) {
			if required {
				problem(n, where, "missing %s: (required by a %s action)", name, a.Type)
			}
			return "", nil
		}
		v := p.Resolve(kv.Val)
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
			a.Junk = p.boolean(kv.Val, where+".junk")
		}
	case TypeAlias:
		a.Value, _ = str("value", true)
	case TypeReject:
		s, v := str("text", false)
		if v != nil {
			if msg := checkRejectText(s); msg != "" {
				problem(v, where+".text", "%s", msg)
			}
		}
		a.Text = s
		if kv, ok := fields["onerror"]; ok {
			problem(kv.Key, where+".onerror", "a reject takes no onerror: it runs no action, the address is refused at RCPT time")
		}
	case TypeForward:
		kv, ok := fields["value"]
		v := (*yaml.Node)(nil)
		if ok {
			v = p.Resolve(kv.Val)
		}
		switch {
		case v == nil || isNull(v):
			problem(n, where, "missing value: (the address or list of addresses to forward to)")
		case v.Kind == yaml.ScalarNode:
			a.Addresses = []string{v.Value}
		case v.Kind == yaml.SequenceNode:
			for i, item := range v.Content {
				item = p.Resolve(item)
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
			v := p.Resolve(kv.Val)
			switch {
			case isNull(v):
			case v.Kind == yaml.SequenceNode:
				for i, item := range v.Content {
					item = p.Resolve(item)
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
			v := p.Resolve(kv.Val)
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
		v := p.Resolve(kv.Val)
		if !isNull(v) {
			a.OnError = p.parseAction(where+".onerror", kv.Val, depth+1)
			if a.OnError.Type == TypeReject {
				// Kept out of OnError's Problem: the action may be an
				// anchor used well elsewhere.
				p.Errorf(v, where+".onerror", "reject cannot be an onerror: the address is refused at RCPT time, before any action runs, or not at all")
			}
		}
	}
	p.actions[n] = a
	return a
}

// maxRejectText keeps a refusal within one SMTP reply line (RFC 5321
// 4.5.3.1.5: 512 octets) after Postfix's "550 5.1.1 <address>: Recipient
// address rejected: ".
const maxRejectText = 200

// checkRejectText returns why s cannot be a reject's reply text, or "".
// The text goes into the policy protocol and an SMTP reply line, so it
// must be one line of printable ASCII.
func checkRejectText(s string) string {
	if len(s) > maxRejectText {
		return fmt.Sprintf("text is %d characters long; at most %d fit in one SMTP reply line", len(s), maxRejectText)
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return fmt.Sprintf("text must be printable ASCII on one line (an SMTP reply), found %q", r)
		}
	}
	return ""
}

var testKeys = []string{"address", "expect", "sender"}

func (p *parser) parseTests(set *Set, v *yaml.Node) {
	if isNull(v) {
		return
	}
	if v.Kind != yaml.SequenceNode {
		p.Errorf(v, "tests", "want a list of {address: ..., expect: ...}")
		return
	}
	for i, item := range v.Content {
		where := fmt.Sprintf("tests[%d]", i)
		item = p.Resolve(item)
		if item.Kind != yaml.MappingNode {
			p.Errorf(item, where, "want {address: ..., expect: ...}")
			continue
		}
		kvs, err := p.Pairs(item, where)
		if err != nil {
			p.Errorf(item, where, "%v", err)
			continue
		}
		t := Test{Pos: posOf(item)}
		for _, kv := range kvs {
			name, _ := stringKey(kv.Key)
			val := p.Resolve(kv.Val)
			s, ok := scalarString(val)
			switch name {
			case "address":
				t.Address = s
			case "sender":
				t.Sender = s
			case "expect":
				t.Expect = s
			default:
				p.UnknownKey(kv.Key, where, testKeys)
				continue
			}
			if !ok {
				p.Errorf(val, where+"."+name, "want a string")
			}
		}
		if t.Address == "" || t.Expect == "" {
			p.Errorf(item, where, "a test needs address: and expect:")
			continue
		}
		set.Tests = append(set.Tests, t)
	}
}
