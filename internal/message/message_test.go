package message_test

import (
	"bytes"
	"strings"
	"testing"

	"quietmx/internal/message"
)

func TestTraceHeaders(t *testing.T) {
	tests := []struct {
		name, sender, rcpt, msg, want string
	}{
		{"LF", "a@b", "x@y", "Subject: s\n\nbody\n", "Return-Path: <a@b>\nDelivered-To: x@y\n"},
		{"CRLF", "a@b", "x@y", "Subject: s\r\n\r\nbody\r\n", "Return-Path: <a@b>\r\nDelivered-To: x@y\r\n"},
		{"first line LF, later CRLF", "a@b", "x@y", "Subject: s\nX: y\r\n\r\n", "Return-Path: <a@b>\nDelivered-To: x@y\n"},
		{"first line CRLF, later LF", "a@b", "x@y", "Subject: s\r\nX: y\n\n", "Return-Path: <a@b>\r\nDelivered-To: x@y\r\n"},
		{"lone CR in first line", "a@b", "x@y", "Subject: s\rt\nX: y\r\n", "Return-Path: <a@b>\nDelivered-To: x@y\n"},
		{"starts with CRLF", "a@b", "x@y", "\r\nbody", "Return-Path: <a@b>\r\nDelivered-To: x@y\r\n"},
		{"starts with LF", "a@b", "x@y", "\nbody\r\n", "Return-Path: <a@b>\nDelivered-To: x@y\n"},
		{"no newline at all", "a@b", "x@y", "Subject: s", "Return-Path: <a@b>\nDelivered-To: x@y\n"},
		{"empty message", "a@b", "x@y", "", "Return-Path: <a@b>\nDelivered-To: x@y\n"},
		{"null sender", "", "x@y", "S: s\n", "Return-Path: <>\nDelivered-To: x@y\n"},
		{"UTF-8 addresses", "送信@例.jp", "受信@例.jp", "S: s\r\n", "Return-Path: <送信@例.jp>\r\nDelivered-To: 受信@例.jp\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := []byte(tt.msg)
			got := message.TraceHeaders(tt.sender, tt.rcpt, msg)
			if string(got) != tt.want {
				t.Errorf("TraceHeaders(%q, %q, %q) = %q, want %q", tt.sender, tt.rcpt, tt.msg, got, tt.want)
			}
			if string(msg) != tt.msg {
				t.Errorf("TraceHeaders changed the message to %q", msg)
			}
			// The rescue copy uses the same line ending, X-Original-To in
			// place of Delivered-To (it was not delivered).
			want := strings.Replace(tt.want, "Delivered-To: ", "X-Original-To: ", 1)
			if got := message.RescueHeaders(tt.sender, tt.rcpt, msg); string(got) != want {
				t.Errorf("RescueHeaders(%q, %q, %q) = %q, want %q", tt.sender, tt.rcpt, tt.msg, got, want)
			}
		})
	}
}

func TestHeader(t *testing.T) {
	tests := []struct {
		name, msg, want string
	}{
		{"LF", "A: b\nC: d\n\nbody\n", "A: b\nC: d\n"},
		{"CRLF", "A: b\r\nC: d\r\n\r\nbody\r\n", "A: b\r\nC: d\r\n"},
		{"CRLF header, LF blank line", "A: b\r\n\nbody", "A: b\r\n"},
		{"first blank line wins (LF then CRLF)", "A: b\n\nX: y\r\n\r\nZ", "A: b\n"},
		{"first blank line wins (CRLF then LF)", "A: b\n\r\nX: y\n\nZ", "A: b\n"},
		{"no blank line: all header", "A: b\nC: d\n", "A: b\nC: d\n"},
		{"no final newline", "A: b", "A: b"},
		{"starts with LF: no header", "\nA: b\n", ""},
		{"starts with CRLF: no header", "\r\nA: b\r\n", ""},
		{"empty", "", ""},
		{"folded header kept", "Subject: a\n b\n\nbody", "Subject: a\n b\n"},
		{"8-bit and NUL in header", "S: \xff\x00\n\n\x00", "S: \xff\x00\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := message.Header([]byte(tt.msg)); string(got) != tt.want {
				t.Errorf("Header(%q) = %q, want %q", tt.msg, got, tt.want)
			}
		})
	}
}

func TestHasDeliveredTo(t *testing.T) {
	tests := []struct {
		name, msg, addr string
		want            bool
	}{
		{"exact", "Delivered-To: a@b\nSubject: s\n\nbody\n", "a@b", true},
		{"header name lower case", "delivered-to: a@b\n\n", "a@b", true},
		{"header name upper case", "DELIVERED-TO: a@b\n\n", "a@b", true},
		{"address case differs (header)", "Delivered-To: A@B.Example\n\n", "a@b.example", true},
		{"address case differs (addr)", "Delivered-To: a@b.example\n\n", "A@B.EXAMPLE", true},
		{"angle brackets", "Delivered-To: <a@b>\n\n", "a@b", true},
		{"CRLF", "Subject: s\r\nDelivered-To: a@b\r\n\r\nbody\r\n", "a@b", true},
		{"CRLF with brackets", "Delivered-To: <a@b>\r\n\r\n", "a@b", true},
		{"no space after colon", "Delivered-To:a@b\n\n", "a@b", true},
		{"tabs and spaces around", "Delivered-To: \t a@b \t\n\n", "a@b", true},
		{"second of several", "Delivered-To: c@d\nDelivered-To: a@b\nDelivered-To: e@f\n\n", "a@b", true},
		{"header only, no body", "Subject: s\nDelivered-To: a@b\n", "a@b", true},
		{"last line without newline", "Subject: s\nDelivered-To: a@b", "a@b", true},
		{"in the body (LF)", "Subject: s\n\nDelivered-To: a@b\n", "a@b", false},
		{"in the body (CRLF)", "Subject: s\r\n\r\nDelivered-To: a@b\r\n", "a@b", false},
		{"in the body after a CRLF header, LF blank", "Subject: s\r\n\nDelivered-To: a@b\n", "a@b", false},
		{"body only (starts with blank line)", "\nDelivered-To: a@b\n", "a@b", false},
		{"other address", "Delivered-To: c@d\n\n", "a@b", false},
		{"longer address", "Delivered-To: xa@b\n\n", "a@b", false},
		{"address with suffix", "Delivered-To: a@b.example\n\n", "a@b", false},
		{"other header name", "X-Delivered-To: a@b\nDelivered-To-Original: a@b\n\n", "a@b", false},
		{"in a folded continuation", "Subject: s\n Delivered-To: a@b\n\n", "a@b", false},
		{"empty addr", "Delivered-To: \n\n", "", false},
		{"empty addr vs brackets", "Delivered-To: <>\n\n", "", false},
		{"empty message", "", "a@b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := message.HasDeliveredTo([]byte(tt.msg), tt.addr); got != tt.want {
				t.Errorf("HasDeliveredTo(%q, %q) = %v, want %v", tt.msg, tt.addr, got, tt.want)
			}
		})
	}
}

// TestOwnTraceIsALoop: a message we delivered (or forwarded) once carries
// our Delivered-To, and seeing it again is detected as a loop.
func TestOwnTraceIsALoop(t *testing.T) {
	for _, msg := range []string{"Subject: s\n\nbody\n", "Subject: s\r\n\r\nbody\r\n", "", "\nbody only\n", "\r\nbody only"} {
		full := append(message.TraceHeaders("a@b", "x@y", []byte(msg)), msg...)
		if !message.HasDeliveredTo(full, "x@y") || !message.HasDeliveredTo(full, "X@Y") {
			t.Errorf("HasDeliveredTo(%q, x@y) = false after prepending our own trace", full)
		}
		if message.HasDeliveredTo(full, "a@b") {
			t.Errorf("HasDeliveredTo(%q, a@b) = true: the Return-Path is not a Delivered-To", full)
		}
	}
}

// FuzzPrependHeaders: prepending the trace headers leaves the message
// untouched (it is a suffix of the result, and no function changes it), the
// header checks never panic, and our own Delivered-To is always found.
func FuzzPrependHeaders(f *testing.F) {
	f.Add([]byte("Subject: s\n\nbody\n"), "a@b", "x@y")
	f.Add([]byte("Subject: s\r\n\r\nbody\r\n"), "", "x@y")
	f.Add([]byte("\r\nDelivered-To: x@y\r\n"), "a@b", "X@Y")
	f.Add([]byte("\x00\xff\r\r\n\n"), "a\rb", "<x@y>")
	f.Add([]byte{}, "", "")
	f.Fuzz(func(t *testing.T, msg []byte, sender, rcpt string) {
		orig := bytes.Clone(msg)
		trace := message.TraceHeaders(sender, rcpt, msg)
		full := append(bytes.Clone(trace), msg...)
		_ = message.HasDeliveredTo(msg, rcpt)
		loop := message.HasDeliveredTo(full, rcpt)
		_ = message.RescueHeaders(sender, rcpt, msg)
		_ = message.Header(full)
		if !bytes.Equal(msg, orig) {
			t.Fatalf("message changed: %q -> %q", orig, msg)
		}
		if !bytes.HasSuffix(full, msg) || !bytes.Equal(full[len(trace):], orig) {
			t.Fatalf("body not a suffix of prepend+msg")
		}
		eol := "\n"
		if i := bytes.IndexByte(msg, '\n'); i > 0 && msg[i-1] == '\r' {
			eol = "\r\n"
		}
		if !bytes.HasSuffix(trace, []byte(eol)) || bytes.Count(trace, []byte("\n")) != 2+strings.Count(sender+rcpt, "\n") {
			t.Fatalf("trace %q does not end with the message's line ending %q", trace, eol)
		}
		// Our own trace is always found, for any address a header line
		// can carry as written.
		if strings.ContainsAny(sender+rcpt, "\n") || rcpt == "" || strings.Trim(strings.TrimSpace(rcpt), "<>") != rcpt {
			return
		}
		if !bytes.HasPrefix(message.Header(full), trace) {
			t.Fatalf("Header(%q) does not start with the trace %q", full, trace)
		}
		if !loop {
			t.Fatalf("HasDeliveredTo(%q, %q) = false after prepending our Delivered-To", full, rcpt)
		}
	})
}

func TestStripFromLine(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"pipe flag F", "From sender@example.org  Mon Nov 30 05:43:26 2026\nSubject: s\n\nbody\n", "Subject: s\n\nbody\n"},
		{"CRLF", "From a@b Mon Nov 30 05:43:26 2026\r\nSubject: s\r\n\r\n", "Subject: s\r\n\r\n"},
		{"null sender", "From MAILER-DAEMON Mon Nov 30 05:43:26 2026\nS: s\n", "S: s\n"},
		{"only the first line", "From a@b x\nFrom b@c y\nS: s\n", "From b@c y\nS: s\n"},
		{"From: header is kept", "From: a@b\nS: s\n", "From: a@b\nS: s\n"},
		{"case matters", "from a@b x\nS: s\n", "from a@b x\nS: s\n"},
		{"not first", "S: s\nFrom a@b x\n", "S: s\nFrom a@b x\n"},
		{">From (quoted) is kept", ">From a@b x\nS: s\n", ">From a@b x\nS: s\n"},
		{"From line and nothing else", "From a@b x", ""},
		{"From line, newline, nothing else", "From a@b x\n", ""},
		{"empty", "", ""},
		{"8-bit after it", "From a@b x\n\x00\xff\r\n", "\x00\xff\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := message.StripFromLine([]byte(tt.in)); string(got) != tt.want {
				t.Errorf("StripFromLine(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzStripFromLine: the result is always a suffix of the input, shorter
// only when the input starts with "From ", and by exactly its first line.
func FuzzStripFromLine(f *testing.F) {
	f.Add([]byte("From a@b x\nS: s\n"))
	f.Add([]byte("From: a\n"))
	f.Add([]byte("From "))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		got := message.StripFromLine(msg)
		if !bytes.HasSuffix(msg, got) {
			t.Fatalf("%q is not a suffix of %q", got, msg)
		}
		if !bytes.HasPrefix(msg, []byte("From ")) {
			if len(got) != len(msg) {
				t.Fatalf("changed a message without a From line: %q -> %q", msg, got)
			}
			return
		}
		cut := msg[:len(msg)-len(got)]
		if bytes.IndexByte(cut, '\n') != len(cut)-1 && bytes.IndexByte(msg, '\n') >= 0 {
			t.Fatalf("cut %q is not exactly the first line of %q", cut, msg)
		}
	})
}
