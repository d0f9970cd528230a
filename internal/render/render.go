// Package render writes every file the appliance runs on (Postfix main.cf
// and master.cf, Dovecot's configuration and passwd-file, the agent's rule
// file with its snapshot and compiled form, certbot's cli.ini and deploy
// hook) from a validated *spec.Spec, into a fresh directory. Swap then
// makes that directory live in one rename, and Diff says which services
// must reload.
//
// The tree, as seen through the live symlink (DefaultLive):
//
//	postfix/main.cf, postfix/master.cf     postfix -c LIVE/postfix
//	postfix/sasl_passwd                    only with outbound SMTP AUTH (0600)
//	dovecot/dovecot.conf, dovecot/passwd   doveconf -c LIVE/dovecot/dovecot.conf
//	altpostlocal/altpostlocal.yaml         with .last-valid and .compiled
//	certbot/cli.ini, certbot/deploy-hook   only in certbot mode, with the
//	certbot/certbot, certbot/ca.pem        wrapper and the ca_file's copy
//
// Files refer to each other through the live path, never through the
// versioned directory, so a swap changes what every reader sees at once
// and a reload picks up the rest.
//
// DIAGNOSTICS
// Render returns an error naming the file it could not write or the check
// that failed; it never leaves a partly written tree behind (the tree is
// built next to its destination and renamed into place only when complete).
//
// SECURITY
// Mailbox passwords from password files are hashed here ({ARGON2ID}); no
// plaintext mailbox password is written anywhere. The smarthost password
// must be plaintext for Postfix's SMTP client: it lands only in
// postfix/sasl_passwd, mode 0600, read by Postfix as root.
package render

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"quietmx/internal/atomicfile"
	"quietmx/internal/authres"
	"quietmx/internal/delivery"
	"quietmx/internal/loginguard"
	"quietmx/internal/milter"
	"quietmx/internal/passwd"
	"quietmx/internal/policy"
	"quietmx/internal/rules"
	"quietmx/internal/spec"
)

// Defaults for Options.
const (
	DefaultLive  = "/etc/quietmx/live"
	DefaultAgent = "/usr/local/bin/altpostlocal"
	// The agent's own deadline, and Postfix's limit above it: Postfix
	// bounces when its limit fires, the agent defers when its own does.
	AgentDeadline  = "300s"
	AgentTimeLimit = "600s"
	// VmailUser is the account Postfix runs the agent as. pipe(8) takes a
	// name, so the image must create it with the spec's uid and gid.
	VmailUser = "vmail"
	// PasswdGroup may read dovecot/passwd (Dovecot's auth process runs as
	// this user's group).
	PasswdGroup = "dovecot"
	// PostscreenDir holds postscreen's cache, on the queue volume, owned
	// by postfix (which the supervisor makes sure of).
	PostscreenDir = "/var/spool/postfix/postscreen"
)

// Relative paths of the rendered files.
const (
	MainCF      = "postfix/main.cf"
	MasterCF    = "postfix/master.cf"
	SASLPasswd  = "postfix/sasl_passwd"
	DovecotConf = "dovecot/dovecot.conf"
	PasswdFile  = "dovecot/passwd"
	RulesFile   = "altpostlocal/altpostlocal.yaml"
	AuthFile    = "altpostlocal/" + milter.SettingsFile // beside RulesFile, where the daemon looks
	CertbotINI  = "certbot/cli.ini"
	DeployHook  = "certbot/deploy-hook"
	CertbotBin  = "certbot/certbot" // the wrapper /usr/local/bin/certbot links to
	CertbotCA   = "certbot/ca.pem"  // a copy of tls.ca_file
)

// Options adjust Render. The zero value renders for the image's layout.
type Options struct {
	Live     string    // the live symlink the files will be read through; DefaultLive when ""
	Agent    string    // the agent binary; DefaultAgent when ""
	Previous string    // a tree rendered before (usually Live): password hashes still matching are kept
	Rand     io.Reader // salt source for new hashes; crypto/rand when nil
	// Params are the argon2id costs of new hashes; zero means
	// passwd.DefaultParams (doveadm's). Tests use cheaper ones.
	Params passwd.Params
	// Ownership applies each file's Group (dovecot/passwd to Dovecot's
	// group): set when installing into the live tree, as root in the
	// image. Off, the tree renders on any machine, with no such group.
	Ownership bool
	// Verify runs Verify on the tree before it appears at outDir.
	Verify bool
	// MetaDirectory is Postfix's meta_directory (postfix-files,
	// dynamicmaps.cf); "" keeps Postfix's default. The image moves the
	// package's metadata out of /etc/postfix so that /etc/postfix can be a
	// link to the live tree with nothing else in it.
	MetaDirectory string
}

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").Option("missingkey=error").ParseFS(templateFS, "templates/*.tmpl"))

// Render writes the whole tree for s into outDir, which must not exist or
// be empty, then checks the rule file it installed loads. It returns nil
// only when every file is written and synced.
func Render(s *spec.Spec, outDir string) error {
	return RenderWith(s, outDir, Options{})
}

// RenderWith is Render with options. The tree is built in a temporary
// directory next to outDir and renamed to outDir only once it is complete
// (and verified, with o.Verify): on any error nothing is left behind, and
// outDir is untouched.
func RenderWith(s *spec.Spec, outDir string, o Options) (err error) {
	if err := checkFresh(outDir); err != nil {
		return err
	}
	files, err := Files(s, o)
	if err != nil {
		return err
	}
	parent := filepath.Dir(outDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(outDir)+".render-*")
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	// MkdirTemp makes it 0700; Dovecot and Postfix read the tree as
	// their own users.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	for _, f := range files {
		if err := writeFile(tmp, f, o.Ownership); err != nil {
			return err
		}
	}
	// The rule file, its last-valid snapshot and compiled form, written and
	// validated the way the agent's own install does.
	rf := filepath.Join(tmp, RulesFile)
	if err := os.MkdirAll(filepath.Dir(rf), 0o755); err != nil {
		return err
	}
	if err := rules.Install(rf, s.Rules.Data); err != nil {
		return fmt.Errorf("render %s: %w", RulesFile, err)
	}
	if loaded, err := rules.Load(rf); err != nil || loaded.Stale || !loaded.Compiled {
		return fmt.Errorf("render %s: the installed rule file does not load cleanly (err %v, stale %v, compiled %v)", RulesFile, err, loaded.Stale, loaded.Compiled)
	}
	backdate(tmp)
	if o.Verify {
		// Files refer to each other through the live path, so checking the
		// tree here is checking it where it will be.
		if err := Verify(tmp); err != nil {
			return err
		}
	}
	if err := syncTree(tmp); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	// rename(2) replaces an empty directory (checkFresh allowed only
	// that; one filled meanwhile makes it fail). os.Rename refuses any
	// directory there, so call it directly.
	if err := syscall.Rename(tmp, outDir); err != nil {
		return fmt.Errorf("render: rename %s into place: %w", outDir, err)
	}
	if err := atomicfile.SyncDir(parent); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	return nil
}

// File is one rendered file.
type File struct {
	Path  string // relative to the tree
	Data  []byte
	Mode  os.FileMode
	Group string // group owner with Options.Ownership ("" = the process's)
}

// Files renders every file but the rule file (whose bytes are
// s.Rules.Data) in memory, in a fixed order. It reads password files.
func Files(s *spec.Spec, o Options) ([]File, error) {
	if o.Live == "" {
		o.Live = DefaultLive
	}
	if o.Agent == "" {
		o.Agent = DefaultAgent
	}
	d := newData(s, o)
	var files []File
	var errs []error
	tmpl := func(rel, name string, mode os.FileMode) {
		var b bytes.Buffer
		if err := templates.ExecuteTemplate(&b, name, d); err != nil {
			errs = append(errs, fmt.Errorf("render %s: %w", rel, err))
			return
		}
		files = append(files, File{Path: rel, Data: b.Bytes(), Mode: mode})
	}
	tmpl(MainCF, "main.cf.tmpl", 0o644)
	tmpl(MasterCF, "master.cf.tmpl", 0o644)
	if s.Outbound != nil && s.Outbound.Username != "" {
		data, err := saslPasswd(s.Outbound)
		if err != nil {
			errs = append(errs, err)
		}
		files = append(files, File{Path: SASLPasswd, Data: data, Mode: 0o600})
	}
	auth, err := authSettings(s)
	if err != nil {
		errs = append(errs, err)
	}
	files = append(files, File{Path: AuthFile, Data: auth, Mode: 0o644})
	tmpl(DovecotConf, "dovecot.conf.tmpl", 0o644)
	pw, err := passwdFile(s, o)
	if err != nil {
		errs = append(errs, err)
	}
	files = append(files, File{Path: PasswdFile, Data: pw, Mode: 0o640, Group: PasswdGroup})
	if s.TLS.Mode == spec.TLSCertbot {
		tmpl(CertbotINI, "cli.ini.tmpl", 0o644)
		tmpl(DeployHook, "deploy-hook.tmpl", 0o755)
		tmpl(CertbotBin, "certbot.tmpl", 0o755)
		if s.TLS.CAFile != "" {
			ca, err := os.ReadFile(s.TLS.CAFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("render %s: %w", CertbotCA, err))
			}
			files = append(files, File{Path: CertbotCA, Data: ca, Mode: 0o644})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return files, nil
}

// authSettings is the mail filter's settings file: the host name and the
// spec's auth: switches, appliance-wide and per mailbox (by Maildir).
func authSettings(s *spec.Spec) ([]byte, error) {
	set := milter.Settings{Hostname: s.Hostname, Default: s.Auth}
	for _, m := range s.Mailboxes {
		if m.Auth != s.Auth {
			if set.Maildirs == nil {
				set.Maildirs = map[string]authres.Methods{}
			}
			set.Maildirs[m.Maildir] = m.Auth
		}
	}
	data, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", AuthFile, err)
	}
	return append(data, '\n'), nil
}

// data is what the templates see.
type data struct {
	Spec          *spec.Spec
	Source        string // the spec, for the "rendered from" header
	MetaDirectory string
	Mydestination string
	Mynetworks    string
	User          string
	Agent         string
	Deadline      string
	TimeLimit     string
	AgentSocket   string
	PolicySocket  string
	MilterSocket  string
	PostfixDir    string
	DovecotConf   string
	PasswdFile    string
	RulesFile     string
	SASLFile      string
	CertbotINI    string
	CertbotDir    string
	DeployHook    string
	CertbotBin    string
	CertbotCA     string
	ACMEWebroot   string
	RescueFolder  string // the rescue directory's IMAP folder, or ""
	// The supervisor's login guard (Dovecot's auth policy server), and
	// the directory of postscreen's cache.
	LoginGuardURL, LoginGuardNonce string
	PostscreenDir                  string
	SMTPDProcesses                 int
}

func newData(s *spec.Spec, o Options) *data {
	source := "the environment"
	if s.File != "" {
		source = filepath.Base(s.File) + " and the environment"
	}
	dest := append(append([]string{}, s.Domains...), "$myhostname", "localhost")
	networks := "127.0.0.0/8"
	if s.IPv6 {
		networks += " [::1]/128"
	}
	live := func(rel string) string { return path.Join(o.Live, rel) }
	return &data{
		Spec:          s,
		Source:        source,
		MetaDirectory: o.MetaDirectory,
		Mydestination: strings.Join(dest, ", "),
		Mynetworks:    networks,
		User:          VmailUser,
		Agent:         o.Agent,
		Deadline:      AgentDeadline,
		TimeLimit:     AgentTimeLimit,
		AgentSocket:   delivery.DefaultSocket,
		PolicySocket:  policy.DefaultSocket,
		MilterSocket:  milter.DefaultSocket,
		PostfixDir:    live("postfix"),
		DovecotConf:   live(DovecotConf),
		PasswdFile:    live(PasswdFile),
		RulesFile:     live(RulesFile),
		SASLFile:      live(SASLPasswd),
		CertbotINI:    live(CertbotINI),
		CertbotDir:    spec.CertbotDir,
		DeployHook:    live(DeployHook),
		CertbotBin:    live(CertbotBin),
		CertbotCA:     live(CertbotCA),
		ACMEWebroot:   spec.ACMEWebroot,
		RescueFolder:  RescueFolder(s),

		LoginGuardURL:   loginguard.URL,
		LoginGuardNonce: loginguard.NonceFile,
		PostscreenDir:   PostscreenDir,
		SMTPDProcesses:  spec.SMTPDProcesses,
	}
}

// RescueFolder names the IMAP folder the rules' rescue directory is, when
// it is the new/ of a Maildir++ folder (.Name) of one of the spec's
// mailboxes, as the generated rules' is; "" otherwise (a plain directory
// no IMAP client sees).
func RescueFolder(s *spec.Spec) string {
	if s.Rules.Set == nil || s.Rules.Set.Rescue == "" {
		return ""
	}
	dir := path.Clean(s.Rules.Set.Rescue)
	if path.Base(dir) != "new" {
		return ""
	}
	folder := path.Dir(dir)
	name := path.Base(folder)
	// A nested folder (.A.B) or a name that needs quoting in dovecot.conf
	// is left to the operator.
	if len(name) < 2 || name[0] != '.' || strings.IndexFunc(name[1:], func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return ""
	}
	switch name[1:] {
	case "Junk", "Trash", "Sent", "Drafts":
		return "" // declared already
	}
	for _, m := range s.Mailboxes {
		if path.Dir(folder) == path.Clean(m.Maildir) {
			return name[1:]
		}
	}
	return ""
}

// passwdFile renders Dovecot's passwd-file:
//
//	login:{SCHEME}hash:uid:gid::home::userdb_mail=maildir:PATH
//
// A password_file is hashed now; with o.Previous, the hash already there
// is kept when the password still matches, so an unchanged password does
// not change the file (nor make Dovecot reload).
func passwdFile(s *spec.Spec, o Options) ([]byte, error) {
	previous := map[string]string{}
	if o.Previous != "" {
		if old, err := os.ReadFile(filepath.Join(o.Previous, PasswdFile)); err == nil {
			for _, line := range strings.Split(string(old), "\n") {
				f := strings.SplitN(line, ":", 3)
				if len(f) == 3 && !strings.HasPrefix(line, "#") {
					previous[f[0]] = f[1]
				}
			}
		}
	}
	var b bytes.Buffer
	b.WriteString("# Dovecot passwd-file. Rendered by quietmx: do not edit.\n")
	for _, m := range s.Mailboxes {
		hash := m.PasswordHash
		if m.PasswordFile != "" {
			raw, err := os.ReadFile(m.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("mailbox %s: %w", m.Login, err)
			}
			pw, err := passwd.ReadSecret(raw)
			if err != nil {
				return nil, fmt.Errorf("mailbox %s: %s: %w", m.Login, m.PasswordFile, err)
			}
			if old, ok := previous[m.Login]; ok {
				if same, err := passwd.Verify(old, pw); err == nil && same {
					hash = old
				}
			}
			if hash == "" {
				if hash, err = passwd.HashWith(pw, o.Rand, o.Params); err != nil {
					return nil, fmt.Errorf("mailbox %s: %w", m.Login, err)
				}
			}
			clear(pw)
		}
		fmt.Fprintf(&b, "%s:%s:%d:%d::%s::userdb_mail=maildir:%s\n",
			m.Login, hash, s.Vmail.UID, s.Vmail.GID, m.Home(), m.Maildir)
	}
	return b.Bytes(), nil
}

// saslPasswd renders the smarthost credentials in Postfix's texthash
// format: "relayhost user:password". The key must be the relayhost exactly
// as main.cf spells it.
func saslPasswd(o *spec.Outbound) ([]byte, error) {
	raw, err := os.ReadFile(o.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	pw, err := passwd.ReadSecret(raw)
	if err != nil {
		return nil, fmt.Errorf("outbound: %s: %w", o.PasswordFile, err)
	}
	return []byte(fmt.Sprintf("# Rendered by quietmx: do not edit.\n%s %s:%s\n", o.Relayhost, o.Username, pw)), nil
}

// checkFresh makes sure dir does not exist or is an empty directory.
func checkFresh(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("render: %s is not empty: render into a fresh directory, then Swap", dir)
	}
	return nil
}

// writeFile writes one file of the tree; with ownership, its group is set
// before the file is visible.
func writeFile(root string, f File, ownership bool) error {
	p := filepath.Join(root, f.Path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	var owner *atomicfile.Owner
	if ownership && f.Group != "" {
		g, err := user.LookupGroup(f.Group)
		if err != nil {
			return fmt.Errorf("render %s: group %s: %w (the image must have it)", f.Path, f.Group, err)
		}
		gid, err := strconv.Atoi(g.Gid)
		if err != nil {
			return fmt.Errorf("render %s: group %s: gid %q: %w", f.Path, f.Group, g.Gid, err)
		}
		owner = &atomicfile.Owner{UID: os.Geteuid(), GID: gid}
	}
	if err := atomicfile.WriteOwned(p, f.Data, f.Mode, owner); err != nil {
		return fmt.Errorf("render %s: %w", f.Path, err)
	}
	return nil
}

// backdate dates every rendered file a minute back. Postfix rereads a
// main.cf modified within the last second or so until it is "stable"
// (dict_load_file), sleeping 300 ms a time: a fresh tree would cost every
// postconf (Verify) and the start of Postfix seconds.
func backdate(root string) {
	t := time.Now().Add(-time.Minute)
	_ = filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err == nil {
			_ = os.Chtimes(p, t, t)
		}
		return nil
	})
}

// syncTree fsyncs every directory of the tree, so that after a crash the
// tree Swap made live is complete.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return atomicfile.SyncDir(p)
	})
}
