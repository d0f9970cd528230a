// Package message reads and prepares the bytes of a message: the mbox
// From_ line it drops, the trace headers the agent prepends and the
// Delivered-To loop check. The rest is never changed: CR, 8-bit and NUL
// bytes pass through untouched.
package message

import (
	"bytes"
	"strings"
)

// StripFromLine drops a leading mbox "From " line (the envelope line
// Postfix's pipe flag F adds), as Dovecot's LDA does on input: only the
// first line, only when it starts exactly with "From " (a "From:" header is
// not one). It reslices msg; it never copies.
func StripFromLine(msg []byte) []byte {
	if !bytes.HasPrefix(msg, []byte("From ")) {
		return msg
	}
	if i := bytes.IndexByte(msg, '\n'); i >= 0 {
		return msg[i+1:]
	}
	return msg[len(msg):]
}

// TraceHeaders returns the Return-Path and Delivered-To lines to prepend to
// msg, using the message's own line ending (CRLF if its first line has one).
func TraceHeaders(sender, recipient string, msg []byte) []byte {
	eol := lineEnding(msg)
	return []byte("Return-Path: <" + sender + ">" + eol + "Delivered-To: " + recipient + eol)
}

// RescueHeaders returns the Return-Path and X-Original-To lines prepended to
// a raw rescue copy.
func RescueHeaders(sender, recipient string, msg []byte) []byte {
	eol := lineEnding(msg)
	return []byte("Return-Path: <" + sender + ">" + eol + "X-Original-To: " + recipient + eol)
}

func lineEnding(msg []byte) string {
	if i := bytes.IndexByte(msg, '\n'); i > 0 && msg[i-1] == '\r' {
		return "\r\n"
	}
	return "\n"
}

// Header returns the header section of msg: everything before the first
// empty line (the whole message if there is none).
func Header(msg []byte) []byte {
	if bytes.HasPrefix(msg, []byte("\n")) || bytes.HasPrefix(msg, []byte("\r\n")) {
		return nil
	}
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		msg = msg[:i+1]
	}
	if i := bytes.Index(msg, []byte("\n\r\n")); i >= 0 {
		msg = msg[:i+1]
	}
	return msg
}

// HasDeliveredTo reports whether the header already carries a Delivered-To
// for addr (case-insensitive): the message has been here before, so
// delivering or forwarding it again would loop (Postfix's delivered_hdr_find).
func HasDeliveredTo(msg []byte, addr string) bool {
	if addr == "" {
		return false
	}
	for line := range bytes.Lines(Header(msg)) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !strings.EqualFold(string(name), "Delivered-To") {
			continue
		}
		v := strings.Trim(strings.TrimSpace(string(value)), "<>")
		if strings.EqualFold(v, addr) {
			return true
		}
	}
	return false
}
