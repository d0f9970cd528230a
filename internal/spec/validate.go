package spec

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"quietmx/internal/passwd"
)

// validate checks every field, fills in the defaults, and loads the rules.
// It records every problem instead of stopping at the first.
func (l *loader) validate() {
	l.validateHost()
	l.validateTLS()
	l.validateLimits()
	l.validateVmail()
	l.validateMailboxes()
	l.validateOutbound()
	l.validateDelivery()
	l.validateProtection()
	l.loadRules()
	l.warnDMARCFail()
}

func (l *loader) validateHost() {
	s := &l.s
	switch {
	case l.failed("hostname"):
	case s.Hostname == "":
		l.problem("hostname", "required: the MX host name, e.g. mail.example.com (or set QUIETMX_HOSTNAME)")
	case checkName(s.Hostname, "host name") != "":
		l.problem("hostname", "%s", checkName(s.Hostname, "host name"))
	default:
		s.Hostname = strings.ToLower(s.Hostname)
	}
	if len(s.Domains) == 0 && !l.failedUnder("domains") {
		l.problem("domains", "at least one receiving domain is required, e.g. [example.com] (or set QUIETMX_DOMAINS=example.com,example.org)")
	}
	first := map[string]int{}
	for i, d := range s.Domains {
		p := index("domains", i)
		if msg := checkName(d, "domain name"); msg != "" {
			l.problem(p, "%s", msg)
			continue
		}
		d = strings.ToLower(d)
		s.Domains[i] = d
		if j, dup := first[d]; dup {
			l.problem(p, "%q is listed twice (also domains[%d])", d, j)
			continue
		}
		first[d] = i
	}
}

// checkName returns why s is not a fully qualified DNS name in ASCII
// (RFC 1123 labels), or "".
func checkName(s, what string) string {
	bad := fmt.Sprintf("%q is not a valid %s", s, what)
	for _, r := range s {
		if r >= 0x80 {
			return bad + " (write an internationalized name in its ASCII form, xn--...)"
		}
	}
	if strings.HasSuffix(s, ".") {
		return bad + " (drop the trailing dot)"
	}
	if len(s) > 253 {
		return bad + " (longer than 253 characters)"
	}
	if net.ParseIP(s) != nil {
		return fmt.Sprintf("%q is an IP address, not a %s", s, what)
	}
	labels := strings.Split(s, ".")
	for _, label := range labels {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for i := 0; i < len(label); i++ {
			c := label[i] | 0x20 // lower case letters
			if !(c >= 'a' && c <= 'z' || label[i] >= '0' && label[i] <= '9' || label[i] == '-') {
				return bad
			}
		}
	}
	if len(labels) < 2 {
		return fmt.Sprintf("%q is not fully qualified (want a name such as %s)", s, map[bool]string{true: "mail.example.com", false: "example.com"}[what == "host name"])
	}
	return ""
}

func (l *loader) validateTLS() {
	t := &l.s.TLS
	if t.Mode == "" {
		t.Mode = TLSSelfSigned
	}
	switch t.Mode {
	case TLSSelfSigned, TLSCertbot, TLSFiles:
	default:
		if l.failed("tls.mode") {
			return
		}
		l.problem("tls.mode", "unknown mode %q (want self-signed, certbot or files)", t.Mode)
		return
	}
	only := func(field, mode string) {
		if field == "staging" && !t.Staging {
			return // false is harmless anywhere (compose files often set it)
		}
		if l.has("tls."+field) && t.Mode != mode {
			l.problem("tls."+field, "only used with mode %s (mode is %s)", mode, t.Mode)
		}
	}
	only("email", TLSCertbot)
	only("staging", TLSCertbot)
	only("server", TLSCertbot)
	only("ca_file", TLSCertbot)
	only("cert", TLSFiles)
	only("key", TLSFiles)
	switch t.Mode {
	case TLSCertbot:
		switch {
		case l.failed("tls.email"):
		case t.Email == "":
			l.problem("tls.email", "required with mode certbot: the ACME account address for expiry notices (or set QUIETMX_CERTBOT_EMAIL)")
		case checkEmail(t.Email) != "":
			l.problem("tls.email", "%s", checkEmail(t.Email))
		}
		if t.Server != "" {
			u, err := url.Parse(t.Server)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				l.problem("tls.server", "want an https:// ACME directory URL, got %q", t.Server)
			} else if t.Staging {
				l.problem("tls.server", "conflicts with staging (staging means Let's Encrypt's staging server)")
			}
		}
		l.validateCAFile()
		t.Cert, t.Key = DefaultCert, DefaultKey
	case TLSFiles:
		for _, f := range []struct {
			name string
			v    *string
			what string
		}{{"cert", &t.Cert, "the certificate chain"}, {"key", &t.Key, "the private key"}} {
			switch {
			case l.failed("tls." + f.name):
			case *f.v == "":
				l.problem("tls."+f.name, "required with mode files: %s, a PEM file (or set QUIETMX_TLS_%s)", f.what, strings.ToUpper(f.name))
			case !path.IsAbs(*f.v):
				l.problem("tls."+f.name, "%q must be an absolute path (as seen inside the container)", *f.v)
			case path.Clean(*f.v) != *f.v:
				l.problem("tls."+f.name, "%q is not a clean path (write %q)", *f.v, path.Clean(*f.v))
			case strings.ContainsAny(*f.v, " \t\r\n,<"):
				l.problem("tls."+f.name, "%q contains a character Postfix or Dovecot would misread", *f.v)
			}
		}
	default:
		t.Cert, t.Key = DefaultCert, DefaultKey
	}
}

// validateCAFile checks tls.ca_file: the CA bundle certbot trusts for a
// private ACME server's HTTPS (it replaces the system's trust store for
// certbot alone, so it only makes sense with tls.server).
func (l *loader) validateCAFile() {
	f := l.s.TLS.CAFile
	switch {
	case f == "" || l.failed("tls.ca_file"):
		return
	case l.s.TLS.Server == "":
		l.problem("tls.ca_file", "only used with tls.server (the ACME directory of the private CA it trusts; or set QUIETMX_CERTBOT_SERVER)")
		return
	case !path.IsAbs(f):
		l.problem("tls.ca_file", "%q must be an absolute path (as seen inside the container)", f)
		return
	case path.Clean(f) != f:
		l.problem("tls.ca_file", "%q is not a clean path (write %q)", f, path.Clean(f))
		return
	}
	data, err := os.ReadFile(f)
	if err != nil {
		l.problem("tls.ca_file", "cannot read the CA bundle: %v", err)
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		l.problem("tls.ca_file", "%s holds no PEM certificate (want the CA certificate(s) that signed the ACME server's HTTPS certificate)", f)
	}
}

// checkEmail returns why s is not a plain address local@domain, or "".
func checkEmail(s string) string {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || strings.ContainsAny(local, " \t\r\n\"<>,;:@") || checkName(domain, "domain name") != "" {
		return fmt.Sprintf("%q is not an e-mail address", s)
	}
	return ""
}

func (l *loader) validateLimits() {
	lim := &l.s.Limits
	if !l.has("limits.message_size") {
		lim.MessageSize = DefaultMessageSize
	} else if !l.failed("limits.message_size") && lim.MessageSize < 1<<20 {
		l.problem("limits.message_size", "%d bytes is too small: at least 1M (1048576), or ordinary mail with attachments is refused", lim.MessageSize)
	}
	if !l.has("limits.recipients_per_message") {
		lim.RecipientsPerMessage = DefaultRecipients
	} else if !l.failed("limits.recipients_per_message") && lim.RecipientsPerMessage < 100 {
		l.problem("limits.recipients_per_message", "%d is below 100, the minimum RFC 5321 (4.5.3.1.8) requires a server to accept", lim.RecipientsPerMessage)
	}
}

func (l *loader) validateVmail() {
	for _, f := range []struct {
		name string
		v    *int
	}{{"uid", &l.s.Vmail.UID}, {"gid", &l.s.Vmail.GID}} {
		p := "vmail." + f.name
		if !l.has(p) {
			*f.v = DefaultVmailID
			continue
		}
		if !l.failed(p) && (*f.v <= 0 || *f.v > 1<<31-2) {
			l.problem(p, "%d is not usable: want a number from 1 to 2147483646 (0 is root, which Dovecot refuses to deliver as)", *f.v)
		}
	}
}

func (l *loader) validateMailboxes() {
	logins := map[string]int{}
	maildirs := map[string]int{}
	for i := range l.s.Mailboxes {
		m := &l.s.Mailboxes[i]
		p := index("mailboxes", i)
		if l.failed(p) {
			continue // not even a mapping
		}
		fromEnv := l.where[p].env != ""
		switch {
		case l.failed(p + ".login"):
		case m.Login == "":
			l.problem(p+".login", "required: the IMAP user name, e.g. me@example.com")
		case checkLogin(m.Login) != "":
			l.problem(p+".login", "%s", checkLogin(m.Login))
		default:
			m.Login = strings.ToLower(m.Login)
			if j, dup := logins[m.Login]; dup {
				l.problem(p+".login", "%q is used twice (also mailboxes[%d]; logins are case-insensitive)", m.Login, j)
			}
			logins[m.Login] = i
		}

		switch {
		case l.failed(p+".password_hash") || l.failed(p+".password_file") || l.failed(p+".password"):
		case m.PasswordHash != "" && m.PasswordFile != "":
			l.problem(p, "give password_hash or password_file, not both")
		case m.PasswordHash == "" && m.PasswordFile == "":
			if fromEnv {
				l.problem(p, "needs a password: set QUIETMX_PASSWORD_FILE (a secret file) or QUIETMX_PASSWORD_HASH")
			} else {
				l.problem(p, "needs a password: password_hash (quietmx passwd makes one) or password_file (a secret file)")
			}
		case m.PasswordHash != "":
			if err := passwd.Check(m.PasswordHash); err != nil {
				l.problem(p+".password_hash", "%v", err)
			}
		default:
			if f, ok := l.filePath(p+".password_file", m.PasswordFile); ok {
				m.PasswordFile = f
				l.checkSecret(p+".password_file", f)
			}
		}

		if m.Maildir == "" && m.Login != "" && !l.failed(p+".login") && len(l.s.Domains) > 0 {
			domain := l.s.Domains[0]
			if i := strings.LastIndexByte(m.Login, '@'); i >= 0 {
				domain = m.Login[i+1:]
			}
			m.Maildir = path.Join(VmailRoot, domain, m.LocalPart(), "Maildir")
			if !l.has(p + ".maildir") {
				l.where[p+".maildir"] = l.where[p+".login"]
			}
		}
		if m.Maildir != "" && !l.failed(p+".maildir") {
			if msg := checkMaildir(m.Maildir); msg != "" {
				l.problem(p+".maildir", "%s", msg)
			} else if j, dup := maildirs[m.Maildir]; dup {
				l.problem(p+".maildir", "%q is also the maildir of mailboxes[%d]", m.Maildir, j)
			} else {
				maildirs[m.Maildir] = i
			}
		}
	}
}

// checkLogin returns why s cannot be a passwd-file user name, or "".
func checkLogin(s string) string {
	bad := fmt.Sprintf("%q is not a valid login (letters, digits and . _ + -, optionally @ and a domain)", s)
	local, domain, hasAt := strings.Cut(s, "@")
	if local == "" || len(s) > 255 {
		return bad
	}
	for i := 0; i < len(local); i++ {
		c := local[i] | 0x20
		if !(c >= 'a' && c <= 'z' || local[i] >= '0' && local[i] <= '9' || strings.IndexByte("._+-", local[i]) >= 0) {
			return bad
		}
	}
	if hasAt && checkName(domain, "domain name") != "" {
		return bad
	}
	return ""
}

// checkMaildir returns why p cannot be a Maildir, or "".
func checkMaildir(p string) string {
	switch {
	case !path.IsAbs(p):
		return fmt.Sprintf("%q must be an absolute path", p)
	case path.Clean(p) != p:
		return fmt.Sprintf("%q is not a clean path (write %q)", p, path.Clean(p))
	case !strings.HasPrefix(p, MailRoot+"/"):
		return fmt.Sprintf("%q is outside the mail volume %s: mail there would be lost when the container is recreated", p, MailRoot)
	}
	for i := 0; i < len(p); i++ {
		c := p[i] | 0x20
		if !(c >= 'a' && c <= 'z' || p[i] >= '0' && p[i] <= '9' || strings.IndexByte("._+-@/", p[i]) >= 0) {
			return fmt.Sprintf("%q may only contain letters, digits and . _ + - @ / (Dovecot's passwd-file and mail_location take it unquoted)", p)
		}
	}
	return ""
}

// filePath resolves a path field: relative to the spec's directory when it
// came from the spec, and absolute only when it came from the environment.
func (l *loader) filePath(field, p string) (string, bool) {
	if filepath.IsAbs(p) {
		return filepath.Clean(p), true
	}
	if o, ok := l.where[field]; ok && o.env != "" {
		l.problem(field, "%q must be an absolute path", p)
		return "", false
	}
	return filepath.Join(l.dir, p), true
}

// checkSecret reads a password file only to check it; the plaintext is not
// kept.
func (l *loader) checkSecret(field, file string) []byte {
	data, err := os.ReadFile(file)
	if err != nil {
		l.problem(field, "cannot read the password file: %v", err)
		return nil
	}
	pw, err := passwd.ReadSecret(data)
	if err != nil {
		l.problem(field, "%s: %v", file, err)
		return nil
	}
	return pw
}

func (l *loader) validateOutbound() {
	o := l.s.Outbound
	if o == nil {
		return
	}
	switch {
	case l.failed("outbound.relayhost"):
	case o.Relayhost == "":
		l.problem("outbound.relayhost", "required: the smarthost, e.g. [smtp.example.net]:587 (or set QUIETMX_RELAYHOST)")
	case checkRelayhost(o.Relayhost) != "":
		l.problem("outbound.relayhost", "%s", checkRelayhost(o.Relayhost))
	}
	switch {
	case o.Username != "" && o.PasswordFile == "":
		l.problem("outbound.password_file", "required with username: the secret file holding the SMTP AUTH password (or set QUIETMX_RELAY_PASSWORD_FILE)")
	case o.Username == "" && o.PasswordFile != "":
		l.problem("outbound.username", "required with password_file: the SMTP AUTH user name (or set QUIETMX_RELAY_USERNAME)")
	case o.Username != "":
		if strings.ContainsAny(o.Username, " \t\r\n:") {
			l.problem("outbound.username", "%q may not contain white space or a colon", o.Username)
		}
		if f, ok := l.filePath("outbound.password_file", o.PasswordFile); ok {
			o.PasswordFile = f
			if pw := l.checkSecret("outbound.password_file", f); pw != nil && !bytes.Equal(pw, bytes.TrimSpace(pw)) {
				l.problem("outbound.password_file", "%s: the password starts or ends with white space, which Postfix's map file cannot keep", f)
			}
		}
	}
}

// checkRelayhost returns why s is not a Postfix relayhost ([host]:port,
// [host], host:port or host), or "".
func checkRelayhost(s string) string {
	bad := fmt.Sprintf("%q is not a relay host (want [smtp.example.net]:587, or smtp.example.net for an MX lookup)", s)
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return bad
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			p, ok := strings.CutPrefix(port, ":")
			if !ok {
				return bad
			}
			port = p
		}
		if net.ParseIP(host) != nil {
			host = ""
		}
	} else if h, p, ok := strings.Cut(s, ":"); ok {
		host, port = h, p
	}
	if host != "" && checkName(host, "host name") != "" {
		return bad
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad
		}
	}
	return ""
}

// parseSize reads a byte count: a whole number, optionally followed by K,
// M or G (binary multiples; KB, KiB and so on are accepted too).
func parseSize(s string) (int64, error) {
	num, mult := cutUnit(strings.TrimSpace(s))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (want bytes, or a number with K, M or G, e.g. 50M)", s)
	}
	return n * mult, nil
}

func cutUnit(s string) (string, int64) {
	lower := strings.ToLower(s)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}} {
		for _, form := range []string{u.suffix + "ib", u.suffix + "b", u.suffix} {
			if strings.HasSuffix(lower, form) {
				return strings.TrimSpace(s[:len(s)-len(form)]), u.mult
			}
		}
	}
	return s, 1
}
