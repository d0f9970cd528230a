package delivery

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// Log writes res as one line per recipient. The keys are an API (operators
// and tests rely on them): queue_id sender recipient orig_recipient key
// actions outcome exit duration_ms, and when set auth rules_stale error
// rescue_file detail. took is the whole call's duration so far.
func Log(log *slog.Logger, res Result, took time.Duration) {
	exit := ExitCode(res.Outcome)
	for _, rec := range res.Records {
		level := slog.LevelInfo
		switch {
		case rec.Outcome == Deferred || rec.Outcome == Lost:
			level = slog.LevelError
		case rec.Outcome == Rescued || res.RulesStale != "" || rec.Error != "":
			level = slog.LevelWarn
		}
		acts := make([]string, len(rec.Actions))
		for i, a := range rec.Actions {
			acts[i] = a.String()
		}
		attrs := []slog.Attr{
			slog.String("queue_id", rec.QueueID),
			slog.String("sender", rec.Sender),
			slog.String("recipient", rec.Recipient),
			slog.String("orig_recipient", rec.OrigRecipient),
			slog.String("key", rec.Key),
			slog.String("actions", strings.Join(acts, "; ")),
			slog.String("outcome", rec.Outcome.String()),
			slog.Int("exit", exit),
			slog.Int64("duration_ms", took.Milliseconds()),
		}
		if rec.Auth != "" {
			attrs = append(attrs, slog.String("auth", rec.Auth))
		}
		if res.RulesStale != "" {
			attrs = append(attrs, slog.String("rules_stale", "using the last valid rule file: "+res.RulesStale))
		}
		if rec.Error != "" {
			attrs = append(attrs, slog.String("error", rec.Error))
		}
		if rec.RescueFile != "" {
			attrs = append(attrs, slog.String("rescue_file", rec.RescueFile))
		}
		if rec.Detail != "" {
			attrs = append(attrs, slog.String("detail", rec.Detail))
		}
		log.LogAttrs(context.Background(), level, "delivery", attrs...)
	}
}
