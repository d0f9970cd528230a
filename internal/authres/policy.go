package authres

import (
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/emersion/go-msgauth/dmarc"
	"quietmx/internal/yamlconf"
)

// Disposition is what the owner wants done with mail whose DMARC check
// failed while the sender's domain asks receivers to act on that.
type Disposition string

// The dispositions, mildest first.
const (
	// Deliver as usual: the verdict is only written down (the default).
	Deliver Disposition = "deliver"
	// Junk delivers into the mailbox's Junk folder.
	Junk Disposition = "junk"
	// Refuse answers 550 at the end of DATA, before the message is
	// accepted (never a bounce), when the domain publishes p=reject;
	// under p=quarantine it is Junk.
	Refuse Disposition = "refuse"
)

var dispositions = []string{string(Deliver), string(Junk), string(Refuse)}

// Apply is what happens to a message with verdict v for an owner whose
// setting is d: only a DMARC fail counts, and never more than the domain
// asked for (p=none: deliver; p=quarantine: at most Junk; p=reject: d).
func (d Disposition) Apply(v Verdict) Disposition {
	if v.DMARC != Fail || d == "" {
		return Deliver
	}
	switch v.Policy {
	case dmarc.PolicyReject:
		return d
	case dmarc.PolicyQuarantine:
		if d == Refuse {
			return Junk
		}
		return d
	}
	return Deliver
}

// AtDelivery is Apply for the delivery agent, after the message was
// accepted: a refusal is no longer possible (it would be a bounce), so
// Refuse delivers into Junk. This is the case of a recipient who asked to
// refuse, sharing a message with one who did not.
func (d Disposition) AtDelivery(v Verdict) Disposition {
	if a := d.Apply(v); a != Refuse {
		return a
	}
	return Junk
}

// Policy is one recipient's settings: which methods run for them and what
// a DMARC failure does.
type Policy struct {
	Methods
	DMARCFail Disposition
}

// Decision is the outcome for a whole message with several recipients:
// the methods run when any recipient wants them, and the message is
// refused only when every recipient asked for the refusal (a milter can
// refuse only the whole message; a recipient who did not ask still gets
// it, marked).
func Decision(policies []Policy, v *Verdict) (Methods, bool) {
	var m Methods
	for _, p := range policies {
		m = m.Union(p.Methods)
	}
	if v == nil || len(policies) == 0 {
		return m, false
	}
	for _, p := range policies {
		if !p.DMARC || p.DMARCFail.Apply(*v) != Refuse {
			return m, false
		}
	}
	return m, true
}

// ParseMethods reads the spec's auth: mapping (appliance-wide, or one
// mailbox's) into base, which holds the defaults: keys dkim, dmarc (DMARC
// implies DKIM) and arc (not available yet: true is an error, so that
// nobody believes ARC results are being checked). ok is false when d
// recorded an error.
func ParseMethods(d *yamlconf.Doc, n *yaml.Node, path string, base Methods) (m Methods, ok bool) {
	pairs, ok := mapping(d, n, path, "dkim, dmarc, arc")
	m = base
	known := []string{"dkim", "dmarc", "arc"}
	for _, kv := range pairs {
		where := yamlconf.Join(path, kv.Key.Value)
		switch kv.Key.Value {
		case "dkim", "dmarc", "arc":
			b, good := d.Bool(kv.Val, where)
			if !good {
				ok = false
				continue
			}
			switch kv.Key.Value {
			case "dkim":
				m.DKIM = b
			case "dmarc":
				m.DMARC = b
			case "arc":
				if b {
					d.Errorf(kv.Val, where, "ARC verification is not available; remove the key or set it to false")
					ok = false
				}
			}
		default:
			d.UnknownKey(kv.Key, path, known)
			ok = false
		}
	}
	if m.DMARC && !m.DKIM {
		for _, kv := range pairs {
			if kv.Key.Value == "dkim" {
				d.Warnf(kv.Val, yamlconf.Join(path, "dkim"), "dmarc: true needs DKIM's results, so DKIM is checked as well")
			}
		}
		m.DKIM = true
	}
	return m, ok
}

// ParseDisposition reads one disposition (deliver, junk, refuse; any case)
// at path. ok is false when d recorded an error.
func ParseDisposition(d *yamlconf.Doc, n *yaml.Node, path string) (Disposition, bool) {
	n = d.Resolve(n)
	if n.Kind != yaml.ScalarNode || yamlconf.IsNull(n) {
		d.Errorf(n, path, "want deliver, junk or refuse, got %s", yamlconf.Describe(n))
		return "", false
	}
	v := strings.ToLower(n.Value)
	for _, w := range dispositions {
		if v == w {
			return Disposition(v), true
		}
	}
	if s := yamlconf.Suggest(n.Value, dispositions); s != "" {
		d.Errorf(n, path, "unknown disposition %q (did you mean %s?)", n.Value, s)
	} else {
		d.Errorf(n, path, "unknown disposition %q (want deliver, junk or refuse)", n.Value)
	}
	return "", false
}

// ParseDMARCFail reads the rule file's dmarc_fail: mapping, address key
// (matched like aliases: keys) to disposition. Keys are lowercased as the
// rule file's aliases are looked up. ok is false when d recorded an error.
func ParseDMARCFail(d *yamlconf.Doc, n *yaml.Node, path string) (map[string]Disposition, bool) {
	pairs, ok := mapping(d, n, path, "address: deliver, junk or refuse")
	if len(pairs) == 0 {
		return nil, ok
	}
	out := map[string]Disposition{}
	for _, kv := range pairs {
		key := kv.Key.Value
		where := yamlconf.Join(path, `"`+key+`"`)
		if key != strings.ToLower(key) {
			d.Warnf(kv.Key, where, "keys are matched in lowercase; %q is read as %q", key, strings.ToLower(key))
		}
		disp, good := ParseDisposition(d, kv.Val, where)
		if !good {
			ok = false
			continue
		}
		out[strings.ToLower(key)] = disp
	}
	return out, ok
}

// mapping returns the entries of the mapping n (null: none); anything else
// is an error naming what was wanted.
func mapping(d *yamlconf.Doc, n *yaml.Node, path, want string) ([]yamlconf.Pair, bool) {
	n = d.Resolve(n)
	if yamlconf.IsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		d.Errorf(n, path, "want a mapping (%s), got %s", want, yamlconf.Describe(n))
		return nil, false
	}
	pairs, err := d.Pairs(n, path)
	if err != nil {
		d.Errorf(n, path, "%v", err)
		return nil, false
	}
	return pairs, true
}
