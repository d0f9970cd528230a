// Package spec reads the appliance spec: one YAML file (quietmx.yaml) plus
// QUIETMX_* environment variables that override it, validated as a whole
// into an immutable *Spec from which package render writes every Postfix,
// Dovecot, agent and certbot file.
//
// Loading has three phases, like the rule file's: parse (YAML nodes, keys
// checked by hand so that unknown keys are named), override (environment
// variables through github.com/caarlos0/env/v11), validate (every field,
// the inline rules through package check, the password and secret files).
// Load returns either a complete Spec or every problem found; it never
// writes anything.
//
// DIAGNOSTICS
// Each problem is one line naming where the value came from:
//
//	quietmx.yaml:12:5: domains[1]: "exa mple.com" is not a valid domain name
//	QUIETMX_DOMAINS: "exa mple.com" is not a valid domain name
//
// and Load joins them all with errors.Join. Warnings (unknown QUIETMX_
// variables, rule-file warnings, paths outside the mail volume) are kept in
// Spec.Warnings.
//
// SECURITY
// A plaintext password is never accepted in the spec: only a hash in a
// strong Dovecot scheme, or a password_file (a secret) that the renderer
// hashes. Load reads secret files only to check them and keeps no
// plaintext in the Spec.
package spec

import (
	"path"
	"strings"

	"quietmx/internal/authres"
	"quietmx/internal/rules"
)

// Paths inside the container. The mail volume holds every Maildir; the
// state volume holds certificates.
const (
	MailRoot  = "/var/mail"       // the mail volume
	VmailRoot = "/var/mail/vmail" // default Maildirs live below
	// RescueFolder is the Maildir++ folder of the first mailbox the
	// generated rules rescue into: the owner sees it over IMAP ("Rescue").
	RescueFolder = ".Rescue"
	StateDir     = "/var/lib/quietmx" // the state volume
	// The certificate Postfix and Dovecot read in self-signed and certbot
	// mode: generated at first start, replaced by certbot's deploy hook.
	DefaultCert = StateDir + "/tls/cert.pem"
	DefaultKey  = StateDir + "/tls/key.pem"
	// CertbotDir is certbot's config-dir (accounts, lineages, renewal).
	CertbotDir = StateDir + "/letsencrypt"
	// ACMEWebroot is certbot's webroot: quietmx run serves its
	// .well-known/acme-challenge/ on port 80 in certbot mode.
	ACMEWebroot = StateDir + "/acme"
	// GeneratedPasswordFile is the one-mailbox shortcut's password file
	// when none is given: `quietmx run` generates it on first start.
	GeneratedPasswordFile = StateDir + "/secrets/mailbox.password"
)

// Defaults.
const (
	DefaultMessageSize = 50 << 20 // bytes
	DefaultRecipients  = 100      // RFC 5321 4.5.3.1.8: at least 100
	DefaultVmailID     = 5000
)

// TLS modes.
const (
	TLSSelfSigned = "self-signed"
	TLSCertbot    = "certbot"
	TLSFiles      = "files"
)

// Spec is a validated appliance spec. It is not modified after Load.
type Spec struct {
	File      string   // the spec file as named in messages; "" when only the environment was read
	Hostname  string   // the MX host name (myhostname), lower case
	Domains   []string // receiving domains, lower case; Domains[0] is mydomain
	IPv6      bool     // listen on IPv6 too (inet_protocols = all)
	TLS       TLS
	Mailboxes []Mailbox
	Rules     Rules
	Limits    Limits
	Vmail     Vmail
	Outbound  *Outbound // nil: forwards go direct
	// Delivery is how Postfix hands mail to the agent: DeliveryLMTP (the
	// resident `altpostlocal serve`) or DeliveryPipe (one exec per
	// recipient, as AltPostLocal).
	Delivery string
	Warnings []string // one line each, as problems are formatted

	Protection Protection // what port 25 and IMAPS check (protection.go)
	// Auth are the sender checks that read the message (DKIM, DMARC),
	// appliance-wide; SPF always runs (auth.go).
	Auth authres.Methods
}

// TLS says where the certificate comes from.
type TLS struct {
	Mode    string // TLSSelfSigned, TLSCertbot or TLSFiles
	Email   string // certbot: account e-mail
	Staging bool   // certbot: Let's Encrypt staging CA
	Server  string // certbot: ACME directory URL of another CA ("" = Let's Encrypt)
	CAFile  string // certbot: CA bundle (PEM) certbot trusts for Server's HTTPS; "" = the system's
	Cert    string // files: certificate chain (PEM); otherwise DefaultCert
	Key     string // files: private key (PEM); otherwise DefaultKey
}

// Mailbox is one IMAP user.
type Mailbox struct {
	Login        string          // lower case; the IMAP user name
	PasswordHash string          // a Dovecot {SCHEME} hash, or ""
	PasswordFile string          // absolute path of a secret holding the password, or ""
	Maildir      string          // absolute, below MailRoot
	Auth         authres.Methods // the spec's auth:, overridden by the mailbox's own
}

// Home is the user's Dovecot home: the directory holding the Maildir.
func (m Mailbox) Home() string { return path.Dir(m.Maildir) }

// Rescue is the rescue directory of generated rules when m is the first
// mailbox: the new/ of its Rescue folder, a Maildir Dovecot shows.
func (m Mailbox) Rescue() string { return path.Join(m.Maildir, RescueFolder, "new") }

// LocalPart returns the login's part before the last "@", or the login.
func (m Mailbox) LocalPart() string {
	if i := strings.LastIndexByte(m.Login, '@'); i >= 0 {
		return m.Login[:i]
	}
	return m.Login
}

// Rules is the agent's rule file, already validated by package check.
type Rules struct {
	Origin    string     // where it came from: "quietmx.yaml:30", a rules_file path, or "generated"
	Data      []byte     // the rule file to install, verbatim (comments kept)
	Set       *rules.Set // the compiled form of Data
	Generated bool       // the spec had no rules: every address goes to the first mailbox
}

// Limits are Postfix's.
type Limits struct {
	MessageSize          int64 // message_size_limit, bytes
	RecipientsPerMessage int   // smtpd_recipient_limit
}

// Vmail is the owner of every Maildir (Postfix runs the agent as the user
// named vmail; Dovecot uses the numbers).
type Vmail struct {
	UID, GID int
}

// Outbound is the smarthost forward actions leave through.
type Outbound struct {
	Relayhost    string // Postfix relayhost syntax: [host]:port
	Username     string // SASL user; "" = no authentication
	PasswordFile string // absolute path of the secret holding the SASL password
}
