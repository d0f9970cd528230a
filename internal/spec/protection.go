package spec

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Protection is what port 25 and IMAPS check before they spend anything
// on a client: the checks on by default cost an honest sender nothing it
// would notice; the opt-in ones cost a first-time sender a delay (deep
// tests) or depend on an outside service (DNS blocklists).
type Protection struct {
	// Pregreet turns on postscreen's pregreet test: a client that talks
	// before the banner is refused (spam bots do, real mail servers wait).
	Pregreet bool
	// DeepTests turns on postscreen's deep protocol tests (pipelining,
	// non-SMTP commands, bare newlines): a new sender's first connection
	// is answered with 4xx and must come back, so its first message waits
	// one retry.
	DeepTests bool
	// DNSBL lists blocklist sites in Postfix's postscreen_dnsbl_sites
	// syntax (name[=filter][*weight]); none by default.
	DNSBL []string
	// DNSBLThreshold is the total weight that refuses a client.
	DNSBLThreshold int
	// Per-client limits on port 25 (Postfix's anvil), per minute except
	// ConnectionsPerClient (at once); 0 is no limit. Over a limit the
	// client gets a 4xx and retries later: nothing is lost.
	ConnectionsPerClient int
	ConnectionRate       int
	MessageRate          int
	RecipientRate        int
	// IMAPFailuresPerMinute is how many failed IMAP logins one client
	// address (an IPv6 /64) gets a minute before its logins are refused;
	// 0 turns the check off.
	IMAPFailuresPerMinute int
}

// Protection defaults. The per-client limits let a large provider's bursts
// through: they deliver from many addresses, a few connections each.
const (
	DefaultConnectionsPerClient = 5   // 6 clients holding 5 each leave 10 smtpd processes free
	DefaultConnectionRate       = 60  // connections a minute from one client
	DefaultMessageRate          = 120 // messages a minute from one client
	DefaultRecipientRate        = 300 // recipients a minute from one client
	DefaultDNSBLThreshold       = 1
	DefaultIMAPFailures         = 10 // failed logins a minute from one address
	// SMTPDProcesses caps the smtpd processes (master.cf): each idle one
	// costs about 1.8 MiB, so 40 of them keep the appliance within 128 MiB
	// however many clients hold connections open.
	SMTPDProcesses = 40
	// MaxConnectionsPerClient leaves one client at most half of them.
	MaxConnectionsPerClient = SMTPDProcesses / 2
)

var (
	protectionKeys = []string{"pregreet", "deep_tests", "dnsbl", "limits", "imap"}
	dnsblKeys      = []string{"sites", "threshold"}
	protLimitKeys  = []string{"connections_per_client", "connection_rate", "message_rate", "recipient_rate"}
	imapKeys       = []string{"failures_per_minute"}
)

// protectionEnv are protection's QUIETMX_* variables (part of envVars).
type protectionEnv struct {
	Pregreet             *string `env:"SMTP_PREGREET"`
	DeepTests            *string `env:"SMTP_DEEP_TESTS"`
	DNSBLSites           *string `env:"DNSBL_SITES"` // comma-separated
	DNSBLThreshold       *string `env:"DNSBL_THRESHOLD"`
	ConnectionsPerClient *string `env:"SMTP_CONNECTIONS_PER_CLIENT"`
	ConnectionRate       *string `env:"SMTP_CONNECTION_RATE"`
	MessageRate          *string `env:"SMTP_MESSAGE_RATE"`
	RecipientRate        *string `env:"SMTP_RECIPIENT_RATE"`
	IMAPFailures         *string `env:"IMAP_FAILURES_PER_MINUTE"`
}

// protectionInt is one whole-number setting: its field path, variable,
// destination, default and range (a min of 0 means "no limit").
type protectionInt struct {
	path, name    string
	env           *string
	dst           *int
	def, min, max int
}

// protectionInts lists the whole-number settings, for the YAML, the
// environment (e, nil when not read) and validation alike.
func (l *loader) protectionInts(e *protectionEnv) []protectionInt {
	p := &l.s.Protection
	if e == nil {
		e = &protectionEnv{}
	}
	return []protectionInt{
		{"protection.limits.connections_per_client", "SMTP_CONNECTIONS_PER_CLIENT", e.ConnectionsPerClient, &p.ConnectionsPerClient, DefaultConnectionsPerClient, 1, MaxConnectionsPerClient},
		{"protection.limits.connection_rate", "SMTP_CONNECTION_RATE", e.ConnectionRate, &p.ConnectionRate, DefaultConnectionRate, 0, 100000},
		{"protection.limits.message_rate", "SMTP_MESSAGE_RATE", e.MessageRate, &p.MessageRate, DefaultMessageRate, 0, 100000},
		{"protection.limits.recipient_rate", "SMTP_RECIPIENT_RATE", e.RecipientRate, &p.RecipientRate, DefaultRecipientRate, 0, 100000},
		{"protection.dnsbl.threshold", "DNSBL_THRESHOLD", e.DNSBLThreshold, &p.DNSBLThreshold, DefaultDNSBLThreshold, 1, 1000},
		{"protection.imap.failures_per_minute", "IMAP_FAILURES_PER_MINUTE", e.IMAPFailures, &p.IMAPFailuresPerMinute, DefaultIMAPFailures, 0, 1000},
	}
}

func (l *loader) parseProtection(n *yaml.Node) {
	p := &l.s.Protection
	kvs, _ := l.mapping(n, "protection", protectionKeys)
	for _, kv := range kvs {
		v := l.Resolve(kv.Val)
		path := "protection." + kv.Key.Value
		switch kv.Key.Value {
		case "pregreet":
			l.boolean(v, path, &p.Pregreet)
		case "deep_tests":
			l.boolean(v, path, &p.DeepTests)
		case "dnsbl":
			kvs, _ := l.mapping(v, path, dnsblKeys)
			for _, kv := range kvs {
				switch kv.Key.Value {
				case "sites":
					l.strList(l.Resolve(kv.Val), path+".sites", &p.DNSBL)
				case "threshold":
					l.integer(l.Resolve(kv.Val), path+".threshold", &p.DNSBLThreshold)
				default:
					l.UnknownKey(kv.Key, path, dnsblKeys)
				}
			}
		case "limits":
			l.protectionGroup(v, path, protLimitKeys)
		case "imap":
			l.protectionGroup(v, path, imapKeys)
		default:
			l.UnknownKey(kv.Key, "protection", protectionKeys)
		}
	}
}

// protectionGroup reads a mapping of whole numbers under protection.
func (l *loader) protectionGroup(n *yaml.Node, path string, keys []string) {
	kvs, _ := l.mapping(n, path, keys)
	for _, kv := range kvs {
		fp := path + "." + kv.Key.Value
		found := false
		for _, f := range l.protectionInts(nil) {
			if f.path == fp {
				l.integer(l.Resolve(kv.Val), fp, f.dst)
				found = true
			}
		}
		if !found {
			l.UnknownKey(kv.Key, path, keys)
		}
	}
}

func (l *loader) applyProtectionEnv(e *protectionEnv) {
	p := &l.s.Protection
	l.envBool(e.Pregreet, "protection.pregreet", "SMTP_PREGREET", &p.Pregreet)
	l.envBool(e.DeepTests, "protection.deep_tests", "SMTP_DEEP_TESTS", &p.DeepTests)
	if e.DNSBLSites != nil {
		l.setEnv("protection.dnsbl.sites", EnvPrefix+"DNSBL_SITES")
		p.DNSBL = nil
		for _, s := range strings.Split(*e.DNSBLSites, ",") {
			if s = strings.TrimSpace(s); s != "" {
				p.DNSBL = append(p.DNSBL, s)
			}
		}
	}
	for _, f := range l.protectionInts(e) {
		l.envInt(f.env, f.path, f.name, f.dst)
	}
}

// envBool reads a boolean variable into dst; a bad value is a problem.
func (l *loader) envBool(v *string, path, name string, dst *bool) {
	if v == nil {
		return
	}
	l.setEnv(path, EnvPrefix+name)
	b, ok := envBool(*v)
	if !ok {
		l.problem(path, "want true or false, got %q", *v)
		return
	}
	*dst = b
}

// envInt reads a whole-number variable into dst; a bad value is a problem.
func (l *loader) envInt(v *string, path, name string, dst *int) {
	if v == nil {
		return
	}
	l.setEnv(path, EnvPrefix+name)
	i, err := strconv.Atoi(strings.TrimSpace(*v))
	if err != nil {
		l.problem(path, "want a whole number, got %q", *v)
		return
	}
	*dst = i
}

// dnsblSite is Postfix's postscreen_dnsbl_sites element: a DNS name, an
// optional reply filter (=127.0.0.2, =127.0.0.[2..11], =127.0.0.[2;4])
// and an optional weight (*3, *-2 for an allowlist).
var dnsblSite = regexp.MustCompile(`^([^=*]+)(=[0-9.\[\];]+)?(\*-?[0-9]+)?$`)

func (l *loader) validateProtection() {
	p := &l.s.Protection
	if !l.has("protection.pregreet") {
		p.Pregreet = true
	}
	for _, f := range l.protectionInts(nil) {
		switch {
		case !l.has(f.path):
			*f.dst = f.def
		case l.failed(f.path):
		case *f.dst < f.min || *f.dst > f.max:
			from := strconv.Itoa(f.min)
			if f.min == 0 {
				from = "0 (no limit)"
			}
			l.problem(f.path, "%d is out of range: want %s to %d%s", *f.dst, from, f.max, protectionWhy(f.path))
		}
	}
	for i, s := range p.DNSBL {
		path := index("protection.dnsbl.sites", i)
		m := dnsblSite.FindStringSubmatch(s)
		if m == nil {
			l.problem(path, "%q is not a blocklist site: want name[=filter][*weight], e.g. zen.spamhaus.org*2", s)
			continue
		}
		if msg := checkName(m[1], "blocklist name"); msg != "" {
			l.problem(path, "%s", msg)
		}
	}
}

func protectionWhy(path string) string {
	switch path {
	case "protection.limits.connections_per_client":
		return fmt.Sprintf(" (half of the %d smtpd processes: one client must not take them all)", SMTPDProcesses)
	case "protection.dnsbl.threshold":
		return " (the total weight of the lists that must name a client)"
	}
	return ""
}
