package spec

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"quietmx/internal/authres"
)

// authEnv are auth's QUIETMX_* variables (part of envVars): the
// appliance-wide switches.
type authEnv struct {
	DKIM  *string `env:"AUTH_DKIM"`
	DMARC *string `env:"AUTH_DMARC"`
}

// mailboxAuth is one mailbox's auth: node, read once the appliance-wide
// setting (YAML and environment) is known, since its keys override that
// setting one by one.
type mailboxAuth struct {
	index int
	node  *yaml.Node
}

// parseAuth reads the appliance-wide auth: mapping. SPF always runs; DKIM
// and DMARC read the message, so they are the owner's choice.
func (l *loader) parseAuth(n *yaml.Node) {
	l.set("auth", n)
	l.s.Auth, _ = authres.ParseMethods(l.Doc, n, "auth", l.s.Auth)
}

// applyAuthEnv overrides the appliance-wide switches with the environment's;
// DMARC on implies DKIM, as in the YAML.
func (l *loader) applyAuthEnv(e *authEnv) {
	l.envBool(e.DKIM, "auth.dkim", "AUTH_DKIM", &l.s.Auth.DKIM)
	l.envBool(e.DMARC, "auth.dmarc", "AUTH_DMARC", &l.s.Auth.DMARC)
	if l.s.Auth.DMARC {
		l.s.Auth.DKIM = true
	}
}

// resolveAuth gives every mailbox its methods: the appliance's, with the
// keys its own auth: mapping names overriding them.
func (l *loader) resolveAuth() {
	for i := range l.s.Mailboxes {
		l.s.Mailboxes[i].Auth = l.s.Auth
	}
	for _, m := range l.mailboxAuth {
		p := index("mailboxes", m.index) + ".auth"
		l.s.Mailboxes[m.index].Auth, _ = authres.ParseMethods(l.Doc, m.node, p, l.s.Auth)
	}
}

// warnDMARCFail warns when the rule file asks for Junk or a refusal on a
// DMARC failure but no mailbox has DMARC checked: the setting would never
// act.
func (l *loader) warnDMARCFail() {
	set := l.s.Rules.Set
	if set == nil || l.s.Auth.DMARC {
		return
	}
	for _, m := range l.s.Mailboxes {
		if m.Auth.DMARC {
			return
		}
	}
	for key, d := range set.DMARCFail {
		if d != authres.Deliver {
			l.warn(Problem{Path: "rules.dmarc_fail", File: l.File, Msg: fmt.Sprintf("%q asks to %s mail that fails DMARC, but DMARC is not checked (auth: {dmarc: true} turns it on)", key, d)})
			return
		}
	}
}

// AuthFor returns the methods for the mailbox whose Maildir is maildir (as
// a rule's delivery names it), or the appliance's when none is.
func (s *Spec) AuthFor(maildir string) authres.Methods {
	for _, m := range s.Mailboxes {
		if m.Maildir == maildir {
			return m.Auth
		}
	}
	return s.Auth
}
