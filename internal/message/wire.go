package message

import (
	"bytes"
	"strings"
)

// FromWire turns the CRLF line endings of a message received over
// SMTP/LMTP into the LF ones pipe(8) hands the agent, in place, so that
// a message is stored the same byte for byte whichever way it came. A CR
// not followed by LF is content and stays.
func FromWire(msg []byte) []byte {
	if bytes.IndexByte(msg, '\r') < 0 {
		return msg
	}
	out := msg[:0]
	for i := 0; i < len(msg); i++ {
		if msg[i] == '\r' && i+1 < len(msg) && msg[i+1] == '\n' {
			continue
		}
		out = append(out, msg[i])
	}
	return out
}

// QueueID returns the Postfix queue id from the message's first
// Received: header ("... by mx (Postfix) with ESMTP id 4AbC12xYz ..."),
// the one Postfix itself added, or "" when there is none. lmtp(8) sends
// no queue id, and the delivery line should still name it.
func QueueID(msg []byte) string {
	var field []byte
	in := false
	for line := range bytes.Lines(Header(msg)) {
		if in {
			if line[0] == ' ' || line[0] == '\t' {
				field = append(field, line...)
				continue
			}
			break
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(name), "Received") {
			field = append(field, line[len(name)+1:]...)
			in = true
		}
	}
	words := strings.Fields(string(field))
	for i := 0; i+1 < len(words); i++ {
		if !strings.EqualFold(words[i], "id") {
			continue
		}
		id := strings.TrimRight(words[i+1], ";")
		if id != "" && len(id) <= 64 && isAlnum(id) {
			return id
		}
		return ""
	}
	return ""
}

func isAlnum(s string) bool {
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
