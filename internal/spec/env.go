package spec

import (
	"fmt"
	"sort"
	"strings"

	"github.com/caarlos0/env/v11"

	"quietmx/internal/yamlconf"
)

// EnvPrefix starts every variable the spec reads.
const EnvPrefix = "QUIETMX_"

// envVars are the environment overrides. Every field is a string, parsed
// here, so that a bad value gets a message naming the variable; an unset
// or empty variable leaves the spec's value alone.
type envVars struct {
	Hostname             *string `env:"HOSTNAME"`
	Domains              *string `env:"DOMAINS"` // comma-separated
	IPv6                 *string `env:"IPV6"`
	TLSMode              *string `env:"TLS_MODE"`
	CertbotEmail         *string `env:"CERTBOT_EMAIL"`
	CertbotStaging       *string `env:"CERTBOT_STAGING"`
	CertbotServer        *string `env:"CERTBOT_SERVER"`
	CertbotCAFile        *string `env:"CERTBOT_CA_FILE"`
	TLSCert              *string `env:"TLS_CERT"`
	TLSKey               *string `env:"TLS_KEY"`
	MessageSize          *string `env:"MESSAGE_SIZE"`
	RecipientsPerMessage *string `env:"RECIPIENTS_PER_MESSAGE"`
	Mailbox              *string `env:"MAILBOX"`
	PasswordFile         *string `env:"PASSWORD_FILE"`
	PasswordHash         *string `env:"PASSWORD_HASH"`
	Maildir              *string `env:"MAILDIR"`
	RulesFile            *string `env:"RULES_FILE"`
	VmailUID             *string `env:"VMAIL_UID"`
	VmailGID             *string `env:"VMAIL_GID"`
	Relayhost            *string `env:"RELAYHOST"`
	RelayUsername        *string `env:"RELAY_USERNAME"`
	RelayPasswordFile    *string `env:"RELAY_PASSWORD_FILE"`
	Delivery             *string `env:"DELIVERY"`
	Protection           protectionEnv
	Auth                 authEnv
}

// OtherEnv lists QUIETMX_ variables read by other parts of the appliance
// (not by the spec), so that they draw no "unknown variable" warning.
var OtherEnv = []string{"QUIETMX_SPEC", "QUIETMX_LIVE", "QUIETMX_LOG_LEVEL", "QUIETMX_LOG_FORMAT", "QUIETMX_STOP_GRACE"}

// EnvNames lists the variables the spec reads, sorted.
func EnvNames() []string {
	ps, err := env.GetFieldParamsWithOptions(&envVars{}, env.Options{Prefix: EnvPrefix})
	if err != nil {
		panic(err) // the struct above is static
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Key)
	}
	sort.Strings(names)
	return names
}

// applyEnv overrides the YAML values with the environment's.
func (l *loader) applyEnv() {
	var e envVars
	if err := env.ParseWithOptions(&e, env.Options{Prefix: EnvPrefix, Environment: l.environ}); err != nil {
		// Only strings are parsed, so this cannot happen; report it anyway.
		l.report(Problem{Msg: fmt.Sprintf("environment: %v", err)})
		return
	}
	l.unknownEnv()
	name := func(s string) string { return EnvPrefix + s }
	str := func(v *string, path, n string, dst *string) {
		if v != nil {
			*dst = *v
			l.setEnv(path, name(n))
		}
	}
	str(e.Hostname, "hostname", "HOSTNAME", &l.s.Hostname)
	if e.Domains != nil {
		l.s.Domains = nil
		for _, d := range strings.Split(*e.Domains, ",") {
			if d = strings.TrimSpace(d); d != "" {
				l.s.Domains = append(l.s.Domains, d)
			}
		}
		l.setEnv("domains", name("DOMAINS"))
	}
	boolean, integer := l.envBool, l.envInt
	boolean(e.IPv6, "ipv6", "IPV6", &l.s.IPv6)
	str(e.TLSMode, "tls.mode", "TLS_MODE", &l.s.TLS.Mode)
	str(e.CertbotEmail, "tls.email", "CERTBOT_EMAIL", &l.s.TLS.Email)
	boolean(e.CertbotStaging, "tls.staging", "CERTBOT_STAGING", &l.s.TLS.Staging)
	str(e.CertbotServer, "tls.server", "CERTBOT_SERVER", &l.s.TLS.Server)
	str(e.CertbotCAFile, "tls.ca_file", "CERTBOT_CA_FILE", &l.s.TLS.CAFile)
	str(e.TLSCert, "tls.cert", "TLS_CERT", &l.s.TLS.Cert)
	str(e.TLSKey, "tls.key", "TLS_KEY", &l.s.TLS.Key)
	if e.MessageSize != nil {
		l.setEnv("limits.message_size", name("MESSAGE_SIZE"))
		if v, err := parseSize(*e.MessageSize); err != nil {
			l.problem("limits.message_size", "%v", err)
		} else {
			l.s.Limits.MessageSize = v
		}
	}
	integer(e.RecipientsPerMessage, "limits.recipients_per_message", "RECIPIENTS_PER_MESSAGE", &l.s.Limits.RecipientsPerMessage)
	str(e.Delivery, "delivery", "DELIVERY", &l.s.Delivery)
	l.applyProtectionEnv(&e.Protection)
	l.applyAuthEnv(&e.Auth)
	integer(e.VmailUID, "vmail.uid", "VMAIL_UID", &l.s.Vmail.UID)
	integer(e.VmailGID, "vmail.gid", "VMAIL_GID", &l.s.Vmail.GID)

	// The one-mailbox shortcut replaces the spec's mailboxes.
	if e.Mailbox != nil {
		l.s.Mailboxes = []Mailbox{{Login: *e.Mailbox}}
		for _, p := range []string{"mailboxes", "mailboxes[0]", "mailboxes[0].login"} {
			l.setEnv(p, name("MAILBOX"))
		}
		str(e.PasswordFile, "mailboxes[0].password_file", "PASSWORD_FILE", &l.s.Mailboxes[0].PasswordFile)
		str(e.PasswordHash, "mailboxes[0].password_hash", "PASSWORD_HASH", &l.s.Mailboxes[0].PasswordHash)
		str(e.Maildir, "mailboxes[0].maildir", "MAILDIR", &l.s.Mailboxes[0].Maildir)
	} else {
		for _, v := range []struct {
			val *string
			n   string
		}{{e.PasswordFile, "PASSWORD_FILE"}, {e.PasswordHash, "PASSWORD_HASH"}, {e.Maildir, "MAILDIR"}} {
			if v.val != nil {
				l.report(Problem{Env: name(v.n), Msg: "needs QUIETMX_MAILBOX (the login it belongs to)"})
			}
		}
	}
	if e.RulesFile != nil {
		// Replaces inline rules as well as rules_file.
		l.rulesKey, l.rulesNode = nil, nil
		delete(l.where, "rules")
		str(e.RulesFile, "rules_file", "RULES_FILE", &l.rulesFile)
	}
	if e.Relayhost != nil || e.RelayUsername != nil || e.RelayPasswordFile != nil {
		if l.s.Outbound == nil {
			l.s.Outbound = &Outbound{}
		}
		l.outbound = true
		o := l.s.Outbound
		str(e.Relayhost, "outbound.relayhost", "RELAYHOST", &o.Relayhost)
		str(e.RelayUsername, "outbound.username", "RELAY_USERNAME", &o.Username)
		str(e.RelayPasswordFile, "outbound.password_file", "RELAY_PASSWORD_FILE", &o.PasswordFile)
	}
}

// unknownEnv warns about QUIETMX_ variables nobody reads: usually a typo
// that would otherwise be silently ignored.
func (l *loader) unknownEnv() {
	known := map[string]bool{}
	names := EnvNames()
	for _, n := range append(names, OtherEnv...) {
		known[n] = true
	}
	var unknown []string
	for k := range l.environ {
		if strings.HasPrefix(k, EnvPrefix) && !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		msg := "unknown variable, ignored"
		if s := yamlconf.Suggest(k, names); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		}
		l.warn(Problem{Env: k, Msg: msg})
	}
}
