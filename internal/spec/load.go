package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"quietmx/internal/yamlconf"
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
		Doc:     yamlconf.New(file),
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
			return nil, l.errs()
		}
	}
	l.applyEnv()
	l.resolveAuth()
	l.validate()
	if l.Diags.HasErrors() {
		return nil, l.errs()
	}
	for _, d := range l.Diags {
		l.s.Warnings = append(l.s.Warnings, d.String())
	}
	return &l.s, nil
}

// errs joins the errors found, each one a *Problem.
func (l *loader) errs() error {
	var errs []error
	for i := range l.Diags {
		if l.Diags[i].Severity == yamlconf.Error {
			errs = append(errs, &l.Diags[i])
		}
	}
	return errors.Join(errs...)
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
// which fields were set, and from which YAML node or variable. The Doc
// walks the YAML and holds every problem and warning, in the order found.
type loader struct {
	*yamlconf.Doc
	dir     string
	src     []byte
	environ map[string]string
	s       Spec
	where   map[string]origin
	bad     map[string]bool // fields with a problem already: no follow-on problems
	fatal   bool            // the YAML could not be read at all

	rulesKey, rulesNode *yaml.Node    // inline rules:, if any
	rulesFile           string        // rules_file:, or QUIETMX_RULES_FILE
	outbound            bool          // outbound: was given
	mailboxAuth         []mailboxAuth // mailboxes' auth:, read once the appliance's is known
}

// problem records a problem with field path, placed at the origin of the
// field or of its nearest parent that has one.
func (l *loader) problem(path, format string, args ...any) {
	p := Problem{Path: path, Msg: fmt.Sprintf(format, args...)}
	for q := path; ; q = parent(q) {
		if o, ok := l.where[q]; ok {
			if o.env != "" {
				p.Env = o.env
			} else {
				p.File, p.Line, p.Col = l.File, o.line, o.col
			}
			break
		}
		if q == "" {
			p.File = l.File
			break
		}
	}
	l.report(p)
	l.bad[path] = true
}

// report records a problem (an error unless its Severity says otherwise).
func (l *loader) report(p Problem) { l.Diags = append(l.Diags, p) }

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
	l.Errorf(n, path, format, args...)
	l.bad[path] = true
}

func (l *loader) warn(p Problem) {
	p.Severity = yamlconf.Warning
	l.report(p)
}

// set records that field path came from node n.
func (l *loader) set(path string, n *yaml.Node) { l.where[path] = origin{line: n.Line, col: n.Column} }

func (l *loader) setEnv(path, name string) { l.where[path] = origin{env: name} }

func (l *loader) has(path string) bool { _, ok := l.where[path]; return ok }

// ---- YAML ----

func (l *loader) parseYAML() {
	root, ok := l.Decode(l.src)
	if !ok {
		l.fatal = true
		return
	}
	if root == nil {
		return // an empty file: everything from the environment
	}
	if root.Kind != yaml.MappingNode {
		l.problemAt(root, "", "the spec must be a mapping of keys (hostname, domains, tls, mailboxes, rules, ...)")
		l.fatal = true
		return
	}
	for _, kv := range l.pairs(root, "") {
		name := kv.Key.Value
		v := l.Resolve(kv.Val)
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
				l.rulesKey, l.rulesNode = kv.Key, kv.Val
				l.set("rules", kv.Key)
			}
		case "rules_file":
			l.str(v, name, &l.rulesFile)
		case "limits":
			l.parseLimits(v)
		case "vmail":
			l.parseVmail(v)
		case "outbound":
			l.parseOutbound(v)
		case "delivery":
			l.str(v, name, &l.s.Delivery)
		case "protection":
			l.parseProtection(v)
		case "auth":
			l.parseAuth(v)
		default:
			if strings.HasPrefix(name, "x-") {
				continue // extension keys hold YAML anchors, as in compose files
			}
			l.UnknownKey(kv.Key, "", topKeys)
		}
	}
}

var (
	topKeys      = []string{"hostname", "domains", "ipv6", "tls", "mailboxes", "rules", "rules_file", "limits", "vmail", "outbound", "delivery", "protection", "auth"}
	tlsKeys      = []string{"mode", "email", "staging", "server", "ca_file", "cert", "key"}
	mailboxKeys  = []string{"login", "password_hash", "password_file", "maildir", "auth"}
	limitsKeys   = []string{"message_size", "recipients_per_message"}
	vmailKeys    = []string{"uid", "gid"}
	outboundKeys = []string{"relayhost", "username", "password_file"}
)

// pairs returns a mapping's entries (see yamlconf.Doc.Pairs); the spec's
// keys must be plain strings.
func (l *loader) pairs(n *yaml.Node, path string) []yamlconf.Pair {
	kvs, err := l.Pairs(n, path)
	if err != nil {
		l.problemAt(n, path, "%v", err)
		return nil
	}
	out := kvs[:0]
	for _, kv := range kvs {
		if kv.Key.Kind != yaml.ScalarNode {
			l.problemAt(kv.Key, path, "a key must be a plain string")
			continue
		}
		out = append(out, kv)
	}
	return out
}

// mapping returns the pairs of a mapping value, or reports its type.
func (l *loader) mapping(n *yaml.Node, path string, want []string) ([]yamlconf.Pair, bool) {
	if isNull(n) {
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		l.problemAt(n, path, "want a mapping with keys %s, got %s", strings.Join(want, ", "), yamlconf.Describe(n))
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
		l.problemAt(n, path, "want a string, got %s", yamlconf.Describe(n))
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
		l.problemAt(n, path, "want a list, got %s", yamlconf.Describe(n))
		return
	}
	l.set(path, n)
	*dst = nil
	for i, c := range n.Content {
		c = l.Resolve(c)
		p := index(path, i)
		if c.Kind != yaml.ScalarNode || isNull(c) {
			l.problemAt(c, p, "want a string, got %s", yamlconf.Describe(c))
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
	b, ok := l.Bool(n, path)
	if !ok {
		l.bad[path] = true
		return
	}
	*dst = b
	l.set(path, n)
}

// envBool reads a boolean variable: the YAML words, and 1 or 0, which a
// variable (always a string, never quoted) cannot mean otherwise.
func envBool(s string) (bool, bool) {
	switch strings.TrimSpace(s) {
	case "1":
		return true, true
	case "0":
		return false, true
	}
	return yamlconf.BoolWord(strings.TrimSpace(s))
}

func (l *loader) integer(n *yaml.Node, path string, dst *int) {
	if isNull(n) {
		return
	}
	v, err := strconv.Atoi(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		l.problemAt(n, path, "want a whole number, got %s", yamlconf.Describe(n))
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
		l.problemAt(n, path, "want a size, got %s", yamlconf.Describe(n))
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
		v := l.Resolve(kv.Val)
		p := "tls." + kv.Key.Value
		switch kv.Key.Value {
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
			l.UnknownKey(kv.Key, "tls", tlsKeys)
		}
	}
}

func (l *loader) parseMailboxes(n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		l.problemAt(n, "mailboxes", "want a list of mailboxes ({login, password_hash or password_file, maildir}), got %s", yamlconf.Describe(n))
		return
	}
	l.set("mailboxes", n)
	for i, c := range n.Content {
		c = l.Resolve(c)
		p := index("mailboxes", i)
		var m Mailbox
		if c.Kind != yaml.MappingNode {
			l.problemAt(c, p, "want a mapping with keys %s, got %s", strings.Join(mailboxKeys, ", "), yamlconf.Describe(c))
			l.s.Mailboxes = append(l.s.Mailboxes, m)
			continue
		}
		l.set(p, c)
		for _, kv := range l.pairs(c, p) {
			v := l.Resolve(kv.Val)
			fp := p + "." + kv.Key.Value
			switch kv.Key.Value {
			case "login":
				l.str(v, fp, &m.Login)
			case "password_hash":
				l.str(v, fp, &m.PasswordHash)
			case "password_file":
				l.str(v, fp, &m.PasswordFile)
			case "maildir":
				l.str(v, fp, &m.Maildir)
			case "auth":
				l.mailboxAuth = append(l.mailboxAuth, mailboxAuth{len(l.s.Mailboxes), kv.Val})
			case "password":
				l.problemAt(kv.Key, fp, "a plaintext password is never accepted in the spec: use password_file (a secret file) or password_hash (quietmx passwd makes one)")
			default:
				l.UnknownKey(kv.Key, p, mailboxKeys)
			}
		}
		l.s.Mailboxes = append(l.s.Mailboxes, m)
	}
}

func (l *loader) parseLimits(n *yaml.Node) {
	kvs, _ := l.mapping(n, "limits", limitsKeys)
	for _, kv := range kvs {
		v := l.Resolve(kv.Val)
		p := "limits." + kv.Key.Value
		switch kv.Key.Value {
		case "message_size":
			l.size(v, p, &l.s.Limits.MessageSize)
		case "recipients_per_message":
			l.integer(v, p, &l.s.Limits.RecipientsPerMessage)
		default:
			l.UnknownKey(kv.Key, "limits", limitsKeys)
		}
	}
}

func (l *loader) parseVmail(n *yaml.Node) {
	kvs, _ := l.mapping(n, "vmail", vmailKeys)
	for _, kv := range kvs {
		v := l.Resolve(kv.Val)
		p := "vmail." + kv.Key.Value
		switch kv.Key.Value {
		case "uid":
			l.integer(v, p, &l.s.Vmail.UID)
		case "gid":
			l.integer(v, p, &l.s.Vmail.GID)
		default:
			l.UnknownKey(kv.Key, "vmail", vmailKeys)
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
		v := l.Resolve(kv.Val)
		p := "outbound." + kv.Key.Value
		switch kv.Key.Value {
		case "relayhost":
			l.str(v, p, &o.Relayhost)
		case "username":
			l.str(v, p, &o.Username)
		case "password_file":
			l.str(v, p, &o.PasswordFile)
		case "password":
			l.problemAt(kv.Key, p, "a plaintext password is never accepted in the spec: use password_file (a secret file)")
		default:
			l.UnknownKey(kv.Key, "outbound", outboundKeys)
		}
	}
}

var isNull = yamlconf.IsNull
