package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"syscall"

	"quietmx/internal/authres"
	"quietmx/internal/lmtp"
	"quietmx/internal/milter"
	"quietmx/internal/rules"
)

// The sender checks (package milter) run in this daemon too: Postfix's
// smtpd hands every message to it (smtpd_milters) in both delivery modes,
// and its per-recipient policy comes from the same rules.Live as delivery.

type milterOpts struct {
	socket, file *string
}

func addMilterFlags(fs *flag.FlagSet) milterOpts {
	return milterOpts{
		socket: fs.String("milter-socket", milter.DefaultSocket, `unix socket to answer smtpd's milter protocol on ("": none)`),
		file:   fs.String("auth", "", "the filter's settings (host name, auth switches; default "+milter.SettingsFile+" beside the rule file)"),
	}
}

// settings reads the filter's settings; without them (no file: an
// appliance rendered without one) the filter is off and delivery reads no
// verdict.
func (o milterOpts) settings(live *rules.Live, logf func(string, ...any)) milter.Settings {
	if *o.socket == "" {
		return milter.Settings{}
	}
	s, err := milter.ReadSettings(o.path(live))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			logf("warning: %v: sender checks off", err)
		}
		return milter.Settings{}
	}
	return s
}

// start serves the filter beside LMTP until ctx ends. Postfix treats an
// unreachable filter as accept (milter_default_action), so its trouble
// never stops mail.
func (o milterOpts) start(ctx context.Context, s milter.Settings, live *rules.Live, log *slog.Logger, logf func(string, ...any)) error {
	if s.Hostname == "" {
		return nil
	}
	l, err := lmtp.Listen(*o.socket)
	if err != nil {
		return fmt.Errorf("milter: %w", err)
	}
	cur := &liveSettings{path: o.path(live), s: s, stamp: stampOf(o.path(live))}
	cfg := milter.Config{
		Hostname: s.Hostname,
		Policy:   func(rcpt string) authres.Policy { return cur.get(logf).Policy(live.Set(), rcpt) },
	}
	go func() {
		if err := milter.Serve(ctx, l, cfg, log); err != nil {
			logf("milter stopped: %v", err)
		}
	}()
	logf("answering smtpd's milter on %s (%s; dkim %v, dmarc %v by default)", *o.socket, s.Hostname, s.Default.DKIM, s.Default.DMARC)
	return nil
}

func (o milterOpts) path(live *rules.Live) string {
	if *o.file != "" {
		return *o.file
	}
	return milter.SettingsPath(live.Path())
}

// liveSettings rereads the settings when a render replaced them, as
// rules.Live does the rules, so that a change of the spec's auth: applies
// to the next message without a restart. The host name stays the one the
// daemon started with (a new one restarts it: see the supervisor).
type liveSettings struct {
	path  string
	mu    sync.Mutex
	stamp string
	s     milter.Settings
}

func stampOf(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	var ino uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino // a render replaces the file (a new inode)
	}
	return fmt.Sprint(st.ModTime().UnixNano(), st.Size(), ino)
}

func (l *liveSettings) get(logf func(string, ...any)) milter.Settings {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := stampOf(l.path); st != l.stamp {
		l.stamp = st
		if s, err := milter.ReadSettings(l.path); err != nil {
			logf("warning: %v: keeping the previous settings", err)
		} else {
			s.Hostname = l.s.Hostname
			l.s = s
		}
	}
	return l.s
}
