package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"quietmx/internal/certs"
)

const hash = "{SHA512-CRYPT}$6$4bAowgfggBr85FSu$A9PM3uNhN0WsrY.1PrmmOXAcMqW3gjS63YHaVA7YdERz3dpVx8kmTu1vJMvBdWoEzCuo6iCE9QfK8lA7Cido11"

// head is a valid spec's first lines; rows append to it (so their own
// lines start at line 7).
const head = `hostname: mail.example.com
domains:
  - example.com
mailboxes:
  - login: me@example.com
    password_hash: "` + hash + `"
`

// testCA is a CA bundle for tls.ca_file (any parsable certificate will do).
var testCA = func() string {
	cert, _, err := certs.SelfSigned("ca.example.net", time.Now())
	if err != nil {
		panic(err)
	}
	return string(cert)
}()

// testDir holds the files rows refer to as {{dir}}/NAME.
func testDir(t *testing.T) string {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"pw":         "secret\n",
		"empty":      "\n",
		"spaced":     " secret \n",
		"rules.yaml": "default:\n  type: maildri\n",
		"good.yaml":  "default: {type: discard}\n",
		"ca.pem":     testCA,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBadInput has one row per validation rule, with the exact message.
func TestBadInput(t *testing.T) {
	dir := testDir(t)
	for _, tc := range []struct {
		name string
		yaml string // "" = no spec file (environment only)
		env  map[string]string
		want string // every problem, one per line
	}{
		// Parsing.
		{"yaml syntax", "hostname: [mail\n", nil,
			`quietmx.yaml:1:11: YAML syntax: did not find expected ',' or ']'`},
		{"yaml syntax, flow mapping left open on line 4", "hostname: mail.example.com\ndomains: [example.com]\nipv6: false\ntls: {mode: self-signed\nlimits: {}\n", nil,
			`quietmx.yaml:4:6: YAML syntax: did not find expected ',' or '}'`},
		{"yaml syntax, unknown anchor", head + "ipv6: *nope\n", nil,
			`quietmx.yaml:7:7: YAML syntax: unknown anchor 'nope' referenced`},
		{"not a mapping", "- hostname\n", nil,
			`quietmx.yaml:1:1: the spec must be a mapping of keys (hostname, domains, tls, mailboxes, rules, ...)`},
		{"unknown key, near miss", head + "hostnme: x\n", nil,
			`quietmx.yaml:7:1: hostnme: unknown key "hostnme" (did you mean hostname?)`},
		{"unknown key", head + "colour: red\n", nil,
			`quietmx.yaml:7:1: colour: unknown key "colour" (want hostname, domains, ipv6, tls, mailboxes, rules, rules_file, limits, vmail, outbound, delivery, protection, auth)`},
		{"unknown nested key", head + "tls:\n  moed: certbot\n", nil,
			`quietmx.yaml:8:3: tls.moed: unknown key "moed" (did you mean mode?)`},
		{"unknown mailbox key", head + "    mailldir: /var/mail/x\n", nil,
			`quietmx.yaml:7:5: mailboxes[0].mailldir: unknown key "mailldir" (did you mean maildir?)`},
		{"wrong type, string", strings.Replace(head, "mail.example.com", "[a, b]", 1), nil,
			`quietmx.yaml:1:11: hostname: want a string, got a list`},
		{"wrong type, list", "hostname: mail.example.com\ndomains: example.com\n", nil,
			`quietmx.yaml:2:10: domains: want a list, got "example.com"`},
		{"wrong type, mapping", head + "tls: certbot\n", nil,
			`quietmx.yaml:7:6: tls: want a mapping with keys mode, email, staging, server, ca_file, cert, key, got "certbot"`},
		{"wrong type, bool", head + "ipv6: maybe\n", nil,
			`quietmx.yaml:7:7: ipv6: want true or false (also yes/no, on/off, unquoted), got "maybe"`},
		{"unknown delivery", head + "delivery: lmpt\n", nil,
			`quietmx.yaml:7:11: delivery: unknown delivery "lmpt" (want lmtp or pipe) (did you mean lmtp?)`},
		{"unknown delivery, far", head + "delivery: exec\n", nil,
			`quietmx.yaml:7:11: delivery: unknown delivery "exec" (want lmtp or pipe)`},
		{"delivery, wrong type", head + "delivery: [pipe]\n", nil,
			`quietmx.yaml:7:11: delivery: want a string, got a list`},
		{"unknown delivery from the environment", head, map[string]string{"QUIETMX_DELIVERY": "Pipe"},
			`QUIETMX_DELIVERY: unknown delivery "Pipe" (want lmtp or pipe) (did you mean pipe?)`},
		{"quoted bool", head + "ipv6: \"false\"\n", nil,
			`quietmx.yaml:7:7: ipv6: want true or false (also yes/no, on/off, unquoted), got "false" (a quoted string)`},
		{"number as bool", head + "tls:\n  mode: certbot\n  email: a@example.com\n  staging: 0\n", nil,
			`quietmx.yaml:10:12: tls.staging: want true or false (also yes/no, on/off, unquoted), got 0 (a number)`},
		{"list as bool", head + "ipv6: [true]\n", nil,
			`quietmx.yaml:7:7: ipv6: want true or false (also yes/no, on/off, unquoted), got a list`},
		{"merge of a scalar", head + "tls: {<<: x}\n", nil,
			`quietmx.yaml:7:6: tls: merge key << wants a mapping or a list of mappings`},
		{"wrong type, number", head + "vmail:\n  uid: vmail\n", nil,
			`quietmx.yaml:8:8: vmail.uid: want a whole number, got "vmail"`},
		{"wrong type, size", head + "limits:\n  message_size: lots\n", nil,
			`quietmx.yaml:8:17: limits.message_size: "lots" is not a size (want bytes, or a number with K, M or G, e.g. 50M)`},

		// Host and domains.
		{"hostname missing", "domains: [example.com]\nmailboxes: [{login: me, password_hash: \"" + hash + "\"}]\n", nil,
			`quietmx.yaml: hostname: required: the MX host name, e.g. mail.example.com (or set QUIETMX_HOSTNAME)`},
		{"inline rules in flow style", head + "rules: {default: {type: discard}}\n", nil,
			`quietmx.yaml:7:8: rules: write the rules as an indented block (one key per line), or use rules_file`},
		{"hostname missing, environment only", "", map[string]string{"QUIETMX_DOMAINS": "example.com", "QUIETMX_MAILBOX": "me", "QUIETMX_PASSWORD_HASH": hash},
			`hostname: required: the MX host name, e.g. mail.example.com (or set QUIETMX_HOSTNAME)`},
		{"hostname invalid", strings.Replace(head, "mail.example.com", "mail_1.example.com", 1), nil,
			`quietmx.yaml:1:11: hostname: "mail_1.example.com" is not a valid host name`},
		{"hostname not qualified", strings.Replace(head, "mail.example.com", "mail", 1), nil,
			`quietmx.yaml:1:11: hostname: "mail" is not fully qualified (want a name such as mail.example.com)`},
		{"hostname is an address", strings.Replace(head, "mail.example.com", "192.0.2.1", 1), nil,
			`quietmx.yaml:1:11: hostname: "192.0.2.1" is an IP address, not a host name`},
		{"hostname not ASCII", strings.Replace(head, "mail.example.com", "mail.exämple.com", 1), nil,
			`quietmx.yaml:1:11: hostname: "mail.exämple.com" is not a valid host name (write an internationalized name in its ASCII form, xn--...)`},
		{"hostname trailing dot", strings.Replace(head, "mail.example.com", "mail.example.com.", 1), nil,
			`quietmx.yaml:1:11: hostname: "mail.example.com." is not a valid host name (drop the trailing dot)`},
		{"domains missing", "hostname: mail.example.com\nmailboxes: [{login: me, password_hash: \"" + hash + "\"}]\n", nil,
			`quietmx.yaml: domains: at least one receiving domain is required, e.g. [example.com] (or set QUIETMX_DOMAINS=example.com,example.org)`},
		{"domain invalid", strings.Replace(head, "  - example.com\n", "  - example.com\n  - exa mple.com\n", 1), nil,
			`quietmx.yaml:4:5: domains[1]: "exa mple.com" is not a valid domain name`},
		{"domain twice", strings.Replace(head, "  - example.com\n", "  - example.com\n  - Example.COM\n", 1), nil,
			`quietmx.yaml:4:5: domains[1]: "example.com" is listed twice (also domains[0])`},
		{"domain invalid, environment", head, map[string]string{"QUIETMX_DOMAINS": "example.com, exa mple.com"},
			`QUIETMX_DOMAINS: "exa mple.com" is not a valid domain name`},
		{"domain twice, environment", head, map[string]string{"QUIETMX_DOMAINS": "example.com,example.org,example.com"},
			`QUIETMX_DOMAINS: "example.com" is listed twice (also domains[0])`},

		// TLS.
		{"tls mode unknown", head + "tls:\n  mode: selfsigned\n", nil,
			`quietmx.yaml:8:9: tls.mode: unknown mode "selfsigned" (want self-signed, certbot or files)`},
		{"tls mode unknown, environment", head, map[string]string{"QUIETMX_TLS_MODE": "acme"},
			`QUIETMX_TLS_MODE: unknown mode "acme" (want self-signed, certbot or files)`},
		{"certbot without email", head + "tls:\n  mode: certbot\n", nil,
			`quietmx.yaml:8:3: tls.email: required with mode certbot: the ACME account address for expiry notices (or set QUIETMX_CERTBOT_EMAIL)`},
		{"certbot email invalid", head + "tls:\n  mode: certbot\n  email: hostmaster\n", nil,
			`quietmx.yaml:9:10: tls.email: "hostmaster" is not an e-mail address`},
		{"certbot server not https", head + "tls:\n  mode: certbot\n  email: a@example.com\n  server: http://ca.example/dir\n", nil,
			`quietmx.yaml:10:11: tls.server: want an https:// ACME directory URL, got "http://ca.example/dir"`},
		{"certbot server and staging", head + "tls:\n  mode: certbot\n  email: a@example.com\n  staging: true\n  server: https://ca.example/dir\n", nil,
			`quietmx.yaml:11:11: tls.server: conflicts with staging (staging means Let's Encrypt's staging server)`},
		{"certbot ca_file without server", head + "tls:\n  mode: certbot\n  email: a@example.com\n  ca_file: {{dir}}/ca.pem\n", nil,
			`quietmx.yaml:10:12: tls.ca_file: only used with tls.server (the ACME directory of the private CA it trusts; or set QUIETMX_CERTBOT_SERVER)`},
		{"certbot ca_file relative", head + "tls:\n  mode: certbot\n  email: a@example.com\n  server: https://ca.example/dir\n  ca_file: ca.pem\n", nil,
			`quietmx.yaml:11:12: tls.ca_file: "ca.pem" must be an absolute path (as seen inside the container)`},
		{"certbot ca_file unclean", head + "tls:\n  mode: certbot\n  email: a@example.com\n  server: https://ca.example/dir\n  ca_file: /etc/ssl//ca.pem\n", nil,
			`quietmx.yaml:11:12: tls.ca_file: "/etc/ssl//ca.pem" is not a clean path (write "/etc/ssl/ca.pem")`},
		{"certbot ca_file missing", head + "tls:\n  mode: certbot\n  email: a@example.com\n  server: https://ca.example/dir\n  ca_file: {{dir}}/nope.pem\n", nil,
			`quietmx.yaml:11:12: tls.ca_file: cannot read the CA bundle: open {{dir}}/nope.pem: no such file or directory`},
		{"certbot ca_file not PEM", head + "tls:\n  mode: certbot\n  email: a@example.com\n  server: https://ca.example/dir\n  ca_file: {{dir}}/pw\n", nil,
			`quietmx.yaml:11:12: tls.ca_file: {{dir}}/pw holds no PEM certificate (want the CA certificate(s) that signed the ACME server's HTTPS certificate)`},
		{"certbot ca_file, environment", head + "tls:\n  mode: certbot\n  email: a@example.com\n  server: https://ca.example/dir\n", map[string]string{"QUIETMX_CERTBOT_CA_FILE": "{{dir}}/empty"},
			`QUIETMX_CERTBOT_CA_FILE: {{dir}}/empty holds no PEM certificate (want the CA certificate(s) that signed the ACME server's HTTPS certificate)`},
		{"ca_file of another mode", head + "tls:\n  ca_file: {{dir}}/ca.pem\n", nil,
			`quietmx.yaml:8:12: tls.ca_file: only used with mode certbot (mode is self-signed)`},
		{"files without cert and key", head + "tls:\n  mode: files\n", nil,
			"quietmx.yaml:8:3: tls.cert: required with mode files: the certificate chain, a PEM file (or set QUIETMX_TLS_CERT)\n" +
				`quietmx.yaml:8:3: tls.key: required with mode files: the private key, a PEM file (or set QUIETMX_TLS_KEY)`},
		{"files relative path", head + "tls:\n  mode: files\n  cert: certs/fullchain.pem\n  key: /etc/ssl/key.pem\n", nil,
			`quietmx.yaml:9:9: tls.cert: "certs/fullchain.pem" must be an absolute path (as seen inside the container)`},
		{"files unclean path", head + "tls:\n  mode: files\n  cert: /etc/ssl/../fullchain.pem\n  key: /etc/ssl/key.pem\n", nil,
			`quietmx.yaml:9:9: tls.cert: "/etc/ssl/../fullchain.pem" is not a clean path (write "/etc/fullchain.pem")`},
		{"option of another mode", head + "tls:\n  email: a@example.com\n", nil,
			`quietmx.yaml:8:10: tls.email: only used with mode certbot (mode is self-signed)`},
		{"option of another mode, environment", head, map[string]string{"QUIETMX_TLS_CERT": "/etc/ssl/cert.pem"},
			`QUIETMX_TLS_CERT: only used with mode files (mode is self-signed)`},

		// Limits and vmail.
		{"message size too small", head + "limits:\n  message_size: 1000\n", nil,
			`quietmx.yaml:8:17: limits.message_size: 1000 bytes is too small: at least 1M (1048576), or ordinary mail with attachments is refused`},
		{"message size, environment", head, map[string]string{"QUIETMX_MESSAGE_SIZE": "fifty megs"},
			`QUIETMX_MESSAGE_SIZE: "fifty megs" is not a size (want bytes, or a number with K, M or G, e.g. 50M)`},
		{"recipients below RFC minimum", head + "limits:\n  recipients_per_message: 10\n", nil,
			`quietmx.yaml:8:27: limits.recipients_per_message: 10 is below 100, the minimum RFC 5321 (4.5.3.1.8) requires a server to accept`},
		{"vmail uid root", head + "vmail:\n  uid: 0\n", nil,
			`quietmx.yaml:8:8: vmail.uid: 0 is not usable: want a number from 1 to 2147483646 (0 is root, which Dovecot refuses to deliver as)`},
		{"vmail gid, environment", head, map[string]string{"QUIETMX_VMAIL_GID": "mail"},
			`QUIETMX_VMAIL_GID: want a whole number, got "mail"`},
		{"ipv6, environment", head, map[string]string{"QUIETMX_IPV6": "sometimes"},
			`QUIETMX_IPV6: want true or false, got "sometimes"`},

		// Mailboxes.
		{"mailboxes not a list", "hostname: mail.example.com\ndomains: [example.com]\nmailboxes: me\n", nil,
			`quietmx.yaml:3:12: mailboxes: want a list of mailboxes ({login, password_hash or password_file, maildir}), got "me"`},
		{"mailbox not a mapping", head + "  - me@example.org\n", nil,
			`quietmx.yaml:7:5: mailboxes[1]: want a mapping with keys login, password_hash, password_file, maildir, auth, got "me@example.org"`},
		{"login missing", head + "  - password_hash: \"" + hash + "\"\n", nil,
			`quietmx.yaml:7:5: mailboxes[1].login: required: the IMAP user name, e.g. me@example.com`},
		{"login invalid", head + "  - login: me:you\n    password_hash: \"" + hash + "\"\n", nil,
			`quietmx.yaml:7:12: mailboxes[1].login: "me:you" is not a valid login (letters, digits and . _ + -, optionally @ and a domain)`},
		{"login twice", head + "  - login: ME@example.com\n    password_hash: \"" + hash + "\"\n    maildir: /var/mail/other/Maildir\n", nil,
			`quietmx.yaml:7:12: mailboxes[1].login: "me@example.com" is used twice (also mailboxes[0]; logins are case-insensitive)`},
		{"plaintext password", head + "    password: hunter2\n", nil,
			`quietmx.yaml:7:5: mailboxes[0].password: a plaintext password is never accepted in the spec: use password_file (a secret file) or password_hash (quietmx passwd makes one)`},
		{"hash and file", head + "    password_file: {{dir}}/pw\n", nil,
			`quietmx.yaml:5:5: mailboxes[0]: give password_hash or password_file, not both`},
		{"no password", head + "  - login: you@example.com\n", nil,
			`quietmx.yaml:7:5: mailboxes[1]: needs a password: password_hash (quietmx passwd makes one) or password_file (a secret file)`},
		{"no password, environment", head, map[string]string{"QUIETMX_MAILBOX": "me@example.com"},
			`QUIETMX_MAILBOX: needs a password: set QUIETMX_PASSWORD_FILE (a secret file) or QUIETMX_PASSWORD_HASH`},
		{"hash plaintext scheme", strings.Replace(head, hash, "{PLAIN}hunter2", 1), nil,
			`quietmx.yaml:6:20: mailboxes[0].password_hash: {PLAIN} is a plaintext password and is refused: put the password in password_file, or hash it with quietmx passwd`},
		{"hash weak scheme", strings.Replace(head, hash, "{MD5-CRYPT}$1$abc$def", 1), nil,
			`quietmx.yaml:6:20: mailboxes[0].password_hash: scheme {MD5-CRYPT} is unknown or too weak (want one of {ARGON2ID}, {ARGON2I}, {BLF-CRYPT}, {SHA512-CRYPT}, {SHA256-CRYPT}; quietmx passwd makes {ARGON2ID})`},
		{"hash without scheme", strings.Replace(head, hash, "$6$abc$def", 1), nil,
			`quietmx.yaml:6:20: mailboxes[0].password_hash: want a Dovecot scheme prefix such as {ARGON2ID} (quietmx passwd makes one)`},
		{"hash, environment", head, map[string]string{"QUIETMX_MAILBOX": "me@example.com", "QUIETMX_PASSWORD_HASH": "hunter2"},
			`QUIETMX_PASSWORD_HASH: want a Dovecot scheme prefix such as {ARGON2ID} (quietmx passwd makes one)`},
		{"password file missing", head + "  - login: you@example.com\n    password_file: {{dir}}/nope\n", nil,
			`quietmx.yaml:8:20: mailboxes[1].password_file: cannot read the password file: open {{dir}}/nope: no such file or directory`},
		{"password file empty", head + "  - login: you@example.com\n    password_file: empty\n", nil,
			`quietmx.yaml:8:20: mailboxes[1].password_file: {{dir}}/empty: the password file is empty`},
		{"password file relative, environment", "", map[string]string{"QUIETMX_HOSTNAME": "mail.example.com", "QUIETMX_DOMAINS": "example.com", "QUIETMX_MAILBOX": "me", "QUIETMX_PASSWORD_FILE": "secrets/pw"},
			`QUIETMX_PASSWORD_FILE: "secrets/pw" must be an absolute path`},
		{"password file without mailbox, environment", head, map[string]string{"QUIETMX_PASSWORD_FILE": "/run/secrets/pw"},
			`QUIETMX_PASSWORD_FILE: needs QUIETMX_MAILBOX (the login it belongs to)`},
		{"maildir relative", head + "    maildir: Maildir\n", nil,
			`quietmx.yaml:7:14: mailboxes[0].maildir: "Maildir" must be an absolute path`},
		{"maildir outside the mail volume", head + "    maildir: /home/me/Maildir\n", nil,
			`quietmx.yaml:7:14: mailboxes[0].maildir: "/home/me/Maildir" is outside the mail volume /var/mail: mail there would be lost when the container is recreated`},
		{"maildir unclean", head + "    maildir: /var/mail/vmail/../me/\n", nil,
			`quietmx.yaml:7:14: mailboxes[0].maildir: "/var/mail/vmail/../me/" is not a clean path (write "/var/mail/me")`},
		{"maildir bad character", head + "    maildir: /var/mail/vmail/%u/Maildir\n", nil,
			`quietmx.yaml:7:14: mailboxes[0].maildir: "/var/mail/vmail/%u/Maildir" may only contain letters, digits and . _ + - @ / (Dovecot's passwd-file and mail_location take it unquoted)`},
		{"maildir shared", head + "  - login: you\n    password_hash: \"" + hash + "\"\n    maildir: /var/mail/vmail/example.com/me/Maildir\n", nil,
			`quietmx.yaml:9:14: mailboxes[1].maildir: "/var/mail/vmail/example.com/me/Maildir" is also the maildir of mailboxes[0]`},
		{"maildir, environment", head, map[string]string{"QUIETMX_MAILBOX": "me", "QUIETMX_PASSWORD_HASH": hash, "QUIETMX_MAILDIR": "/srv/mail"},
			`QUIETMX_MAILDIR: "/srv/mail" is outside the mail volume /var/mail: mail there would be lost when the container is recreated`},

		// Rules.
		{"rules and rules_file", head + "rules_file: {{dir}}/good.yaml\nrules:\n  default: {type: discard}\n", nil,
			`quietmx.yaml:7:13: rules_file: give rules or rules_file, not both`},
		{"rules_file unreadable", head + "rules_file: missing.yaml\n", nil,
			`quietmx.yaml:7:13: rules_file: cannot read the rule file: open {{dir}}/missing.yaml: no such file or directory`},
		{"rules_file invalid", head + "rules_file: rules.yaml\n", nil,
			`{{dir}}/rules.yaml:2:9: default.type: unknown action "maildri" (want maildir, pipe, forward, dump, nothing, discard or alias)`},
		{"inline rules invalid", head + "rules:\n  # comment\n  extension: \"(?=x)\"\n  default:\n    type: maildri\n", nil,
			"quietmx.yaml:9:14: rules.extension: regexp \"(?=x)\" uses lookaround ((?=...), (?!...), (?<=...), (?<!...)), which Ruby's Onigmo accepted but Go's RE2 syntax does not support; rewrite it without that construct\n" +
				`quietmx.yaml:11:11: rules.default.type: unknown action "maildri" (want maildir, pipe, forward, dump, nothing, discard or alias)`},
		{"inline rules routing test fails", head + "rules:\n  default: {type: discard}\n  tests:\n    - {address: me@example.com, expect: maildir}\n", nil,
			`quietmx.yaml:10:7: rules.tests[0]: me@example.com routes to key "default" (discard), want "maildir"`},
		{"inline rules, quoted die_quietly", head + "rules:\n  die_quietly: \"false\"\n  default: {type: discard}\n", nil,
			`quietmx.yaml:8:16: rules.die_quietly: want true or false (also yes/no, on/off, unquoted), got "false" (a quoted string)`},
		{"inline rules, alias: for aliases:", head + "rules:\n  alias:\n    me: {type: discard}\n  default: {type: discard}\n", nil,
			`quietmx.yaml:8:3: rules.alias: unknown key "alias" (did you mean aliases?)`},
		{"inline rules, flow mapping left open", head + "rules:\n  rescue: /var/mail/r\n  default: {type: discard\n", nil,
			`quietmx.yaml:9:12: YAML syntax: did not find expected ',' or '}'`},
		{"inline rules not a mapping", head + "rules: [a]\n", nil,
			`quietmx.yaml:7:8: rules: want the rule file's mapping (extension, aliases, default, rescue, ...), got a list`},
		{"no rules and no mailboxes", "hostname: mail.example.com\ndomains: [example.com]\n", nil,
			`quietmx.yaml: rules: no rules and no mailboxes: mail would have nowhere to go (add mailboxes, rules or rules_file)`},
		{"rules_file relative, environment", head, map[string]string{"QUIETMX_RULES_FILE": "rules.yaml"},
			`QUIETMX_RULES_FILE: "rules.yaml" must be an absolute path`},

		// Outbound.
		{"outbound without relayhost", head + "outbound:\n  username: mx\n  password_file: pw\n", nil,
			`quietmx.yaml:8:3: outbound.relayhost: required: the smarthost, e.g. [smtp.example.net]:587 (or set QUIETMX_RELAYHOST)`},
		{"outbound relayhost invalid", head + "outbound:\n  relayhost: smtp.example.net:smtp\n", nil,
			`quietmx.yaml:8:14: outbound.relayhost: "smtp.example.net:smtp" is not a relay host (want [smtp.example.net]:587, or smtp.example.net for an MX lookup)`},
		{"outbound username without password", head + "outbound:\n  relayhost: \"[smtp.example.net]:587\"\n  username: mx\n", nil,
			`quietmx.yaml:8:3: outbound.password_file: required with username: the secret file holding the SMTP AUTH password (or set QUIETMX_RELAY_PASSWORD_FILE)`},
		{"outbound password without username", head, map[string]string{"QUIETMX_RELAYHOST": "[smtp.example.net]:587", "QUIETMX_RELAY_PASSWORD_FILE": "/run/secrets/x"},
			`quietmx.yaml: outbound.username: required with password_file: the SMTP AUTH user name (or set QUIETMX_RELAY_USERNAME)`},
		{"outbound plaintext password", head + "outbound:\n  relayhost: \"[smtp.example.net]:587\"\n  password: hunter2\n", nil,
			`quietmx.yaml:9:3: outbound.password: a plaintext password is never accepted in the spec: use password_file (a secret file)`},
		{"outbound password with spaces", head + "outbound:\n  relayhost: \"[smtp.example.net]:587\"\n  username: mx\n  password_file: spaced\n", nil,
			`quietmx.yaml:10:18: outbound.password_file: {{dir}}/spaced: the password starts or ends with white space, which Postfix's map file cannot keep`},

		// Everything is reported at once.
		{"several problems", "hostname: mail\ndomains: [example.com, example.com]\nmailboxes:\n  - login: me\n", nil,
			"quietmx.yaml:1:11: hostname: \"mail\" is not fully qualified (want a name such as mail.example.com)\n" +
				"quietmx.yaml:2:24: domains[1]: \"example.com\" is listed twice (also domains[0])\n" +
				"quietmx.yaml:4:5: mailboxes[0]: needs a password: password_hash (quietmx passwd makes one) or password_file (a secret file)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := ""
			var data []byte
			if tc.yaml != "" {
				file = filepath.Join(dir, "quietmx.yaml")
				data = []byte(strings.ReplaceAll(tc.yaml, "{{dir}}", dir))
			}
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = strings.ReplaceAll(v, "{{dir}}", dir)
			}
			s, err := Load(file, data, env)
			if err == nil {
				t.Fatalf("Load succeeded (%d warnings: %q), want:\n%s", len(s.Warnings), s.Warnings, tc.want)
			}
			if s != nil {
				t.Error("Load returned a Spec with its error")
			}
			got := strings.ReplaceAll(err.Error(), dir+"/quietmx.yaml", "quietmx.yaml")
			got = strings.ReplaceAll(got, dir, "{{dir}}")
			if got != tc.want {
				t.Errorf("Load error:\n%s\nwant:\n%s", got, tc.want)
			}
			var p *Problem
			if !errors.As(err, &p) && !strings.Contains(tc.want, "{{dir}}/rules.yaml") {
				t.Errorf("the error is not a *Problem")
			}
		})
	}
}

// TestEnvOverrides: the environment wins over the spec, field by field,
// and problems name the variable a value came from.
func TestEnvOverrides(t *testing.T) {
	yaml := head + `ipv6: false
tls:
  mode: self-signed
limits:
  message_size: 10M
vmail:
  uid: 6000
  gid: 6000
`
	s, err := Load("quietmx.yaml", []byte(yaml), map[string]string{
		"QUIETMX_HOSTNAME":       "mx.example.org",
		"QUIETMX_DOMAINS":        " example.org , EXAMPLE.net ",
		"QUIETMX_IPV6":           "yes",
		"QUIETMX_TLS_MODE":       "certbot",
		"QUIETMX_CERTBOT_EMAIL":  "hostmaster@example.org",
		"QUIETMX_MESSAGE_SIZE":   "20M",
		"QUIETMX_VMAIL_UID":      "5001",
		"QUIETMX_MAILBOX":        "You@Example.org",
		"QUIETMX_PASSWORD_HASH":  hash,
		"QUIETMX_UNRELATED_TYPO": "x",
		"OTHER":                  "ignored",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field string
		got   any
		want  any
	}{
		{"Hostname", s.Hostname, "mx.example.org"},
		{"Domains", strings.Join(s.Domains, ","), "example.org,example.net"},
		{"IPv6", s.IPv6, true},
		{"TLS.Mode", s.TLS.Mode, TLSCertbot},
		{"TLS.Email", s.TLS.Email, "hostmaster@example.org"},
		{"TLS.Cert", s.TLS.Cert, DefaultCert},
		{"MessageSize", s.Limits.MessageSize, int64(20 << 20)},
		{"RecipientsPerMessage", s.Limits.RecipientsPerMessage, DefaultRecipients},
		{"Vmail.UID", s.Vmail.UID, 5001}, // environment
		{"Vmail.GID", s.Vmail.GID, 6000}, // spec
		{"Mailboxes", len(s.Mailboxes), 1},
		{"Mailboxes[0].Login", s.Mailboxes[0].Login, "you@example.org"},
		{"Mailboxes[0].Maildir", s.Mailboxes[0].Maildir, "/var/mail/vmail/example.org/you/Maildir"},
		{"Rules.Generated", s.Rules.Generated, true},
		{"Warnings", strings.Join(s.Warnings, "\n"), "QUIETMX_UNRELATED_TYPO: warning: unknown variable, ignored"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}

	// Without the environment, the spec's values stand.
	s, err = Load("quietmx.yaml", []byte(yaml), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Hostname != "mail.example.com" || s.Limits.MessageSize != 10<<20 || s.Vmail.UID != 6000 || s.IPv6 {
		t.Errorf("spec values lost: %+v", s)
	}

	// An empty variable counts as unset (compose's ${VAR} of an unset VAR).
	s, err = Load("quietmx.yaml", []byte(yaml), map[string]string{"QUIETMX_HOSTNAME": ""})
	if err != nil || s.Hostname != "mail.example.com" {
		t.Errorf("empty QUIETMX_HOSTNAME: %v, hostname %q", err, s.Hostname)
	}
}

func TestEnvOnly(t *testing.T) {
	dir := testDir(t)
	s, err := Load("", nil, map[string]string{
		"QUIETMX_HOSTNAME":      "mail.example.com",
		"QUIETMX_DOMAINS":       "example.com,example.org",
		"QUIETMX_MAILBOX":       "me",
		"QUIETMX_PASSWORD_FILE": filepath.Join(dir, "pw"),
		"QUIETMX_DOMAIN":        "typo.example",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Mailboxes[0].Maildir; got != "/var/mail/vmail/example.com/me/Maildir" {
		t.Errorf("Maildir = %q", got)
	}
	if s.Mailboxes[0].PasswordHash != "" || s.Mailboxes[0].PasswordFile != filepath.Join(dir, "pw") {
		t.Errorf("mailbox = %+v", s.Mailboxes[0])
	}
	want := []string{"QUIETMX_DOMAIN: warning: unknown variable, ignored (did you mean QUIETMX_DOMAINS?)"}
	if !slices.Equal(s.Warnings, want) {
		t.Errorf("Warnings = %q, want %q", s.Warnings, want)
	}
	// The generated rules route every domain to the mailbox.
	for _, addr := range []string{"me@example.com", "anyone@example.org", "me+tag@example.com"} {
		if s.Rules.Set.Default == nil && s.Rules.Set.Aliases["me"] == nil {
			t.Fatalf("generated rules have no route for %s", addr)
		}
	}
	if !strings.Contains(string(s.Rules.Data), "default:\n  type: maildir\n  value: /var/mail/vmail/example.com/me/Maildir\n") {
		t.Errorf("generated rules:\n%s", s.Rules.Data)
	}
}

// TestInlineRules: the rules: block is taken verbatim (comments kept) and
// its warnings point at spec lines.
func TestInlineRules(t *testing.T) {
	yaml := head + `rules:
  # shared boxes
  x-anchors:
    me: &me {type: maildir, value: /var/mail/vmail/example.com/me/Maildir}
  aliases:
    me@example.com: *me
    backup: {type: maildir, value: /srv/backup/Maildir}
  default: *me

# the next key's comment
limits:
  message_size: 20M
`
	s, err := Load("quietmx.yaml", []byte(yaml), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	wantData := `# Rendered by quietmx from the rules: block of quietmx.yaml (line 7).
# Edit the spec, not this file: every render replaces it.
# shared boxes
x-anchors:
  me: &me {type: maildir, value: /var/mail/vmail/example.com/me/Maildir}
aliases:
  me@example.com: *me
  backup: {type: maildir, value: /srv/backup/Maildir}
default: *me
`
	if string(s.Rules.Data) != wantData {
		t.Errorf("Rules.Data:\n%s\nwant:\n%s", s.Rules.Data, wantData)
	}
	if s.Rules.Origin != "quietmx.yaml:7" {
		t.Errorf("Origin = %q", s.Rules.Origin)
	}
	want := `quietmx.yaml:13:13: warning: rules: maildir "/srv/backup/Maildir" is outside the mail volume /var/mail: mail there would be lost when the container is recreated`
	if !slices.Contains(s.Warnings, want) {
		t.Errorf("Warnings = %q\nwant among them %q", s.Warnings, want)
	}
	if s.Limits.MessageSize != 20<<20 {
		t.Errorf("the key after rules: was lost")
	}
}

func TestDefaults(t *testing.T) {
	s, err := Load("quietmx.yaml", []byte(head), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{
		TLS:    TLS{Mode: TLSSelfSigned, Cert: DefaultCert, Key: DefaultKey},
		Limits: Limits{MessageSize: 50 << 20, RecipientsPerMessage: 100},
		Vmail:  Vmail{UID: 5000, GID: 5000},
	}
	if s.TLS != want.TLS || s.Limits != want.Limits || s.Vmail != want.Vmail || s.IPv6 || s.Outbound != nil {
		t.Errorf("defaults: TLS %+v, Limits %+v, Vmail %+v, IPv6 %v, Outbound %v", s.TLS, s.Limits, s.Vmail, s.IPv6, s.Outbound)
	}
	if s.Delivery != DeliveryLMTP {
		t.Errorf("Delivery = %q, want lmtp", s.Delivery)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("Warnings = %q", s.Warnings)
	}
}

// TestDelivery: the spec chooses lmtp or pipe, and QUIETMX_DELIVERY wins.
func TestDelivery(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		env  map[string]string
		want string
	}{
		{head, nil, DeliveryLMTP},
		{head + "delivery: pipe\n", nil, DeliveryPipe},
		{head + "delivery: lmtp\n", nil, DeliveryLMTP},
		{head + "delivery:\n", nil, DeliveryLMTP},
		{head + "delivery: pipe\n", map[string]string{"QUIETMX_DELIVERY": "lmtp"}, DeliveryLMTP},
		{head, map[string]string{"QUIETMX_DELIVERY": "pipe"}, DeliveryPipe},
		{head + "delivery: pipe\n", map[string]string{"QUIETMX_DELIVERY": ""}, DeliveryPipe},
	} {
		env := map[string]string{}
		for k, v := range tc.env {
			env[k] = v
		}
		s, err := Load("quietmx.yaml", []byte(tc.yaml), env)
		if err != nil {
			t.Fatalf("%q %v: %v", tc.yaml[len(head):], tc.env, err)
		}
		if s.Delivery != tc.want {
			t.Errorf("%q %v: Delivery = %q, want %q", tc.yaml[len(head):], tc.env, s.Delivery, tc.want)
		}
	}
}

// TestCAFile: tls.ca_file from the spec or QUIETMX_CERTBOT_CA_FILE (which
// wins) lands in the Spec as given.
func TestCAFile(t *testing.T) {
	dir := testDir(t)
	ca := filepath.Join(dir, "ca.pem")
	other := filepath.Join(dir, "other.pem")
	if err := os.WriteFile(other, []byte(testCA+testCA), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := head + "tls:\n  mode: certbot\n  email: a@example.com\n  server: https://pebble:14000/dir\n  ca_file: " + ca + "\n"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"yaml", nil, ca},
		{"environment wins", map[string]string{"QUIETMX_CERTBOT_CA_FILE": other}, other},
	} {
		s, err := Load("quietmx.yaml", []byte(yaml), tc.env)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if s.TLS.CAFile != tc.want || s.TLS.Server != "https://pebble:14000/dir" {
			t.Errorf("%s: CAFile %q, Server %q; want %q", tc.name, s.TLS.CAFile, s.TLS.Server, tc.want)
		}
	}
}

// TestStagingFalseAnywhere: QUIETMX_CERTBOT_STAGING=false set for every
// mode (as a compose file may) is not "only used with mode certbot".
func TestStagingFalseAnywhere(t *testing.T) {
	if _, err := Load("quietmx.yaml", []byte(head), map[string]string{"QUIETMX_CERTBOT_STAGING": "false"}); err != nil {
		t.Fatal(err)
	}
	_, err := Load("quietmx.yaml", []byte(head), map[string]string{"QUIETMX_CERTBOT_STAGING": "true"})
	if err == nil || err.Error() != "QUIETMX_CERTBOT_STAGING: only used with mode certbot (mode is self-signed)" {
		t.Fatalf("staging true with self-signed: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"1048576", 1 << 20}, {"50M", 50 << 20}, {"50 MiB", 50 << 20}, {"2g", 2 << 30}, {"512KB", 512 << 10}} {
		if got, err := parseSize(tc.in); err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "M", "-5M", "1.5G", "9999999999999G"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}

func TestEnvNamesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/spec.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range EnvNames() {
		if !strings.Contains(string(doc), "`"+n+"`") {
			t.Errorf("docs/spec.md does not document %s", n)
		}
	}
}

// The YAML policies the rule files share (package yamlconf): a duplicate
// key warns and the last one wins; booleans are the unquoted YAML 1.1
// words in any case; x- keys hold anchors for << merges.
func TestSharedYAMLPolicies(t *testing.T) {
	s, err := Load("quietmx.yaml", []byte(head+"ipv6: true\nipv6: false\n"), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`quietmx.yaml:8:1: warning: key "ipv6" is defined more than once (first at line 7); the last one wins`}
	if s.IPv6 || !slices.Equal(s.Warnings, want) {
		t.Errorf("IPv6 = %v, Warnings = %q; want false and %q", s.IPv6, s.Warnings, want)
	}
	for word, want := range map[string]bool{"true": true, "True": true, "YES": true, "on": true, "false": false, "No": false, "OFF": false, "": false} {
		s, err := Load("quietmx.yaml", []byte(head+"ipv6: "+word+"\n"), map[string]string{})
		if err != nil || s.IPv6 != want {
			t.Errorf("ipv6: %s = %v (%v), want %v", word, s != nil && s.IPv6, err, want)
		}
	}
	s, err = Load("quietmx.yaml", []byte(head+"x-limits: &l {message_size: 20M, recipients_per_message: 200}\nlimits: {<<: *l, message_size: 30M}\n"), map[string]string{})
	if err != nil || s.Limits.MessageSize != 30<<20 || s.Limits.RecipientsPerMessage != 200 {
		t.Errorf("merge: %+v %v", s, err)
	}
}
