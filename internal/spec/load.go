package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LoadFile reads the spec file at path (relative paths inside it are
// relative to its directory) and applies the environment. An empty path
// means no file: the spec comes from the environment alone. environ nil
// means the process environment.
func LoadFile(path string, environ map[string]string) (*Spec, error) {
	if path == "" {
		return Load("", nil, environ)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Problem{File: path, Msg: fmt.Sprintf("cannot read the spec: %v", err)}
	}
	return Load(path, data, environ)
}

// Load parses the spec in data (named file in messages, and the base of
// its relative paths), overrides it with the QUIETMX_* variables of
// environ (the process environment when nil) and validates the result.
// It returns a complete Spec, or nil and every problem joined with
// errors.Join (each one a *Problem). It reads the rules_file and the
// password files it names, and writes nothing.
func Load(file string, data []byte, environ map[string]string) (*Spec, error) {
	if environ == nil {
		environ = processEnv()
	}
	l := &loader{
		file:    file,
		dir:     filepath.Dir(file),
		src:     data,
		environ: environ,
		where:   map[string]origin{},
		bad:     map[string]bool{},
	}
	l.s.File = file
	if len(data) > 0 {
		l.parseYAML()
		if l.fatal {
			// Nothing else can be trusted: report the syntax error alone.
			return nil, errors.Join(l.problems...)
		}
	}
	l.applyEnv()
	l.validate()
	if len(l.problems) > 0 {
		return nil, errors.Join(l.problems...)
	}
	l.s.Warnings = l.warnings
	return &l.s, nil
}

func processEnv() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// loader holds one Load's state. Values go straight into s; where records
// which fields were set, and from which YAML node or variable.
type loader struct {
	file, dir string
	src       []byte
	environ   map[string]string
	s         Spec
	where     map[string]origin
	problems  []error
	bad       map[string]bool // fields with a problem already: no follow-on problems
	fatal     bool            // the YAML could not be read at all
	warnings  []string
	budget    int

	rulesKey, rulesNode *yaml.Node // inline rules:, if any
	rulesFile           string     // rules_file:, or QUIETMX_RULES_FILE
	outbound            bool       // outbound: was given
}

// problem records a problem with field path, placed at the origin of the
// field or of its nearest parent that has one.
func (l *loader) problem(path, format string, args ...any) {
	p := &Problem{Path: path, Msg: fmt.Sprintf(format, args...)}
	for q := path; ; q = parent(q) {
		if o, ok := l.where[q]; ok {
			if o.env != "" {
				p.Env = o.env
			} else {
				p.File, p.Line, p.Col = l.file, o.line, o.col
			}
			break
		}
		if q == "" {
			p.File = l.file
			break
		}
	}
	l.problems = append(l.problems, p)
	l.bad[path] = true
}

// failed reports whether field path already has a problem.
func (l *loader) failed(path string) bool { return l.bad[path] }

// failedUnder reports whether path or any field below it has a problem.
func (l *loader) failedUnder(path string) bool {
	for p := range l.bad {
		if p == path || strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[") {
			return true
		}
	}
	return false
}

// problemAt records a problem at a YAML node.
func (l *loader) problemAt(n *yaml.Node, path, format string, args ...any) {
	l.problems = append(l.problems, &Problem{File: l.file, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
	l.bad[path] = true
}

func (l *loader) warn(p *Problem) { l.warnings = append(l.warnings, "warning: "+p.Error()) }

// set records that field path came from node n.
func (l *loader) set(path string, n *yaml.Node) { l.where[path] = origin{line: n.Line, col: n.Column} }

func (l *loader) setEnv(path, name string) { l.where[path] = origin{env: name} }

func (l *loader) has(path string) bool { _, ok := l.where[path]; return ok }

// ---- YAML ----

// expansionBudget caps the nodes one Load visits through aliases, so an
// alias bomb is refused instead of exhausting memory.
const expansionBudget = 1_000_000

func (l *loader) parseYAML() {
	l.budget = expansionBudget
	var doc yaml.Node
	if err := yaml.Unmarshal(l.src, &doc); err != nil {
		l.yamlError(err)
		l.fatal = true
		return
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return // an empty file: everything from the environment
	}
	root := l.resolve(doc.Content[0])
	if isNull(root) {
		return
	}
	if root.Kind != yaml.MappingNode {
		l.problemAt(root, "", "the spec must be a mapping of keys (hostname, domains, tls, mailboxes, rules, ...)")
		l.fatal = true
		return
	}
	for _, kv := range l.pairs(root, "") {
		name := kv.key.Value
		v := l.resolve(kv.val)
		switch name {
		case "hostname":
			l.str(v, name, &l.s.Hostname)
		case "domains":
			l.strList(v, name, &l.s.Domains)
		case "ipv6":
			l.boolean(v, name, &l.s.IPv6)
		case "tls":
			l.parseTLS(v)
		case "mailboxes":
			l.parseMailboxes(v)
		case "rules":
			if !isNull(v) {
				l.rulesKey, l.rulesNode = kv.key, kv.val
				l.set("rules", kv.key)
			}
		case "rules_file":
			l.str(v, name, &l.rulesFile)
		case "limits":
			l.parseLimits(v)
		case "vmail":
			l.parseVmail(v)
		case "outbound":
			l.parseOutbound(v)
		default:
			if strings.HasPrefix(name, "x-") {
				continue // extension keys hold YAML anchors, as in compose files
			}
			l.unknownKey(kv.key, "", topKeys)
		}
	}
}

var (
	topKeys      = []string{"hostname", "domains", "ipv6", "tls", "mailboxes", "rules", "rules_file", "limits", "vmail", "outbound"}
	tlsKeys      = []string{"mode", "email", "staging", "server", "ca_file", "cert", "key"}
	mailboxKeys  = []string{"login", "password_hash", "password_file", "maildir"}
	limitsKeys   = []string{"message_size", "recipients_per_message"}
	vmailKeys    = []string{"uid", "gid"}
	outboundKeys = []string{"relayhost", "username", "password_file"}
)

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func (l *loader) unknownKey(k *yaml.Node, prefix string, want []string) {
	msg := "unknown key (want " + strings.Join(want, ", ") + ")"
	if s := suggest(k.Value, want); s != "" {
		msg = fmt.Sprintf("unknown key; did you mean %s?", s)
	}
	l.problemAt(k, join(prefix, k.Value), "%s", msg)
}

// yamlError turns a yaml.v3 syntax error ("yaml: line 3: ...") into a
// positioned problem.
func (l *loader) yamlError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ": "); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, rest[i+2:]
			}
		}
	}
	l.problems = append(l.problems, &Problem{File: l.file, Line: line, Msg: "YAML: " + msg})
}

func (l *loader) spend() bool {
	l.budget--
	return l.budget > 0
}

// resolve follows YAML aliases to the node they name.
func (l *loader) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		l.spend()
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

type pair struct{ key, val *yaml.Node }

// pairs returns a mapping's entries with << merge keys applied (explicit
// keys win over merged ones). A key given twice explicitly is a problem,
// and so is a key that is not a plain string.
func (l *loader) pairs(n *yaml.Node, prefix string) []pair {
	var out []pair
	seen := map[string]int{}
	explicit := map[string]*yaml.Node{}
	var merge func(m *yaml.Node, depth int)
	add := func(k, v *yaml.Node, fromMerge bool) {
		if !l.spend() {
			return
		}
		if k.Kind != yaml.ScalarNode {
			l.problemAt(k, prefix, "a key must be a plain string")
			return
		}
		if !fromMerge {
			if first, dup := explicit[k.Value]; dup {
				l.problemAt(k, join(prefix, k.Value), "given twice (first at line %d)", first.Line)
				return
			}
			explicit[k.Value] = k
		}
		if i, ok := seen[k.Value]; ok {
			if !fromMerge {
				out[i] = pair{k, v}
			}
			return
		}
		seen[k.Value] = len(out)
		out = append(out, pair{k, v})
	}
	merge = func(m *yaml.Node, depth int) {
		m = l.resolve(m)
		if depth > 20 || l.budget <= 0 {
			l.problemAt(m, prefix, "merge (<<) nested too deeply")
			return
		}
		switch m.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(m.Content); i += 2 {
				add(l.resolve(m.Content[i]), m.Content[i+1], true)
			}
		case yaml.SequenceNode:
			for _, c := range m.Content {
				merge(c, depth+1)
			}
		default:
			l.problemAt(m, prefix, "<< must merge a mapping or a list of mappings")
		}
	}
	// Explicit keys first, so they win over merged ones wherever << is.
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := l.resolve(n.Content[i])
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, n.Content[i+1])
			continue
		}
		add(k, n.Content[i+1], false)
	}
	for _, m := range merges {
		merge(m, 0)
	}
	return out
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	switch n.Tag {
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "true/false"
	}
	return fmt.Sprintf("%q", n.Value)
}

// mapping returns the pairs of a mapping value, or reports its type.
func (l *loader) mapping(n *yaml.Node, path string, want []string) ([]pair, bool) {
	if isNull(n) {
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		l.problemAt(n, path, "want a mapping with keys %s, got %s", strings.Join(want, ", "), describe(n))
		return nil, false
	}
	l.set(path, n)
	return l.pairs(n, path), true
}

// str stores a scalar as a string; null leaves dst unset.
func (l *loader) str(n *yaml.Node, path string, dst *string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.ScalarNode {
		l.problemAt(n, path, "want a string, got %s", describe(n))
		return
	}
	*dst = n.Value
	l.set(path, n)
}

func (l *loader) strList(n *yaml.Node, path string, dst *[]string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		l.problemAt(n, path, "want a list, got %s", describe(n))
		return
	}
	l.set(path, n)
	*dst = nil
	for i, c := range n.Content {
		c = l.resolve(c)
		p := index(path, i)
		if c.Kind != yaml.ScalarNode || isNull(c) {
			l.problemAt(c, p, "want a string, got %s", describe(c))
			continue
		}
		*dst = append(*dst, c.Value)
		l.set(p, c)
	}
}

func (l *loader) boolean(n *yaml.Node, path string, dst *bool) {
	if isNull(n) {
		return
	}
	b, ok := parseBool(n.Value)
	if n.Kind != yaml.ScalarNode || !ok {
		l.problemAt(n, path, "want true or false, got %s", describe(n))
		return
	}
	*dst = b
	l.set(path, n)
}

// parseBool accepts YAML 1.1's spellings too, as the rule file does.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "yes", "on", "1":
		return true, true
	case "false", "no", "off", "0":
		return false, true
	}
	return false, false
}

func (l *loader) integer(n *yaml.Node, path string, dst *int) {
	if isNull(n) {
		return
	}
	v, err := strconv.Atoi(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		l.problemAt(n, path, "want a whole number, got %s", describe(n))
		return
	}
	*dst = v
	l.set(path, n)
}

func (l *loader) size(n *yaml.Node, path string, dst *int64) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.ScalarNode {
		l.problemAt(n, path, "want a size, got %s", describe(n))
		return
	}
	v, err := parseSize(n.Value)
	if err != nil {
		l.problemAt(n, path, "%v", err)
		return
	}
	*dst = v
	l.set(path, n)
}

func (l *loader) parseTLS(n *yaml.Node) {
	kvs, ok := l.mapping(n, "tls", tlsKeys)
	if !ok {
		return
	}
	for _, kv := range kvs {
		v := l.resolve(kv.val)
		p := "tls." + kv.key.Value
		switch kv.key.Value {
		case "mode":
			l.str(v, p, &l.s.TLS.Mode)
		case "email":
			l.str(v, p, &l.s.TLS.Email)
		case "staging":
			l.boolean(v, p, &l.s.TLS.Staging)
		case "server":
			l.str(v, p, &l.s.TLS.Server)
		case "ca_file":
			l.str(v, p, &l.s.TLS.CAFile)
		case "cert":
			l.str(v, p, &l.s.TLS.Cert)
		case "key":
			l.str(v, p, &l.s.TLS.Key)
		default:
			l.unknownKey(kv.key, "tls", tlsKeys)
		}
	}
}

func (l *loader) parseMailboxes(n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		l.problemAt(n, "mailboxes", "want a list of mailboxes ({login, password_hash or password_file, maildir}), got %s", describe(n))
		return
	}
	l.set("mailboxes", n)
	for i, c := range n.Content {
		c = l.resolve(c)
		p := index("mailboxes", i)
		var m Mailbox
		if c.Kind != yaml.MappingNode {
			l.problemAt(c, p, "want a mapping with keys %s, got %s", strings.Join(mailboxKeys, ", "), describe(c))
			l.s.Mailboxes = append(l.s.Mailboxes, m)
			continue
		}
		l.set(p, c)
		for _, kv := range l.pairs(c, p) {
			v := l.resolve(kv.val)
			fp := p + "." + kv.key.Value
			switch kv.key.Value {
			case "login":
				l.str(v, fp, &m.Login)
			case "password_hash":
				l.str(v, fp, &m.PasswordHash)
			case "password_file":
				l.str(v, fp, &m.PasswordFile)
			case "maildir":
				l.str(v, fp, &m.Maildir)
			case "password":
				l.problemAt(kv.key, fp, "a plaintext password is never accepted in the spec: use password_file (a secret file) or password_hash (quietmx passwd makes one)")
			default:
				l.unknownKey(kv.key, p, mailboxKeys)
			}
		}
		l.s.Mailboxes = append(l.s.Mailboxes, m)
	}
}

func (l *loader) parseLimits(n *yaml.Node) {
	kvs, _ := l.mapping(n, "limits", limitsKeys)
	for _, kv := range kvs {
		v := l.resolve(kv.val)
		p := "limits." + kv.key.Value
		switch kv.key.Value {
		case "message_size":
			l.size(v, p, &l.s.Limits.MessageSize)
		case "recipients_per_message":
			l.integer(v, p, &l.s.Limits.RecipientsPerMessage)
		default:
			l.unknownKey(kv.key, "limits", limitsKeys)
		}
	}
}

func (l *loader) parseVmail(n *yaml.Node) {
	kvs, _ := l.mapping(n, "vmail", vmailKeys)
	for _, kv := range kvs {
		v := l.resolve(kv.val)
		p := "vmail." + kv.key.Value
		switch kv.key.Value {
		case "uid":
			l.integer(v, p, &l.s.Vmail.UID)
		case "gid":
			l.integer(v, p, &l.s.Vmail.GID)
		default:
			l.unknownKey(kv.key, "vmail", vmailKeys)
		}
	}
}

func (l *loader) parseOutbound(n *yaml.Node) {
	kvs, ok := l.mapping(n, "outbound", outboundKeys)
	if !ok {
		return
	}
	l.outbound = true
	o := &Outbound{}
	l.s.Outbound = o
	for _, kv := range kvs {
		v := l.resolve(kv.val)
		p := "outbound." + kv.key.Value
		switch kv.key.Value {
		case "relayhost":
			l.str(v, p, &o.Relayhost)
		case "username":
			l.str(v, p, &o.Username)
		case "password_file":
			l.str(v, p, &o.PasswordFile)
		case "password":
			l.problemAt(kv.key, p, "a plaintext password is never accepted in the spec: use password_file (a secret file)")
		default:
			l.unknownKey(kv.key, "outbound", outboundKeys)
		}
	}
}

// suggest returns the candidate closest to s (edit distance at most 2), or "".
func suggest(s string, candidates []string) string {
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
