package main

import (
	"context"
	"log/slog"
	"net"

	"quietmx/internal/policy"
	"quietmx/internal/rules"
)

func init() { PolicyServer = servePolicy }

// servePolicy answers smtpd's check_policy_service on l until ctx ends.
// Only refusals and "would reject" (reject_mode: log) are logged: a DUNNO
// line for every recipient would double the mail log.
func servePolicy(ctx context.Context, l net.Listener, current func() *rules.Set, log *slog.Logger, _ func(string, ...any)) error {
	srv := &policy.Server{Rules: current, Log: slog.New(minLevel{log.Handler(), slog.LevelInfo})}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			srv.Close()
		case <-stopped:
		}
	}()
	err := srv.Serve(l)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// minLevel drops records below its level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.level}
}

func (h minLevel) WithGroup(g string) slog.Handler { return minLevel{h.Handler.WithGroup(g), h.level} }
