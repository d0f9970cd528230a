package oracle

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
)

// Lost is the nothing-lost oracle: sent holds each message sent, by
// Message-ID ("<id>"); got is what a mailbox holds (ByMessageID). Every
// message sent must be there, complete and unaltered (Intact); more than
// one complete copy is allowed (Postfix delivers at least once), and a
// message nobody sent is a violation too.
func Lost(sent map[string][]byte, got map[string][][]byte) []Violation {
	var out []Violation
	ids := make([]string, 0, len(sent))
	for id := range sent {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		copies := got[id]
		if len(copies) == 0 {
			out = append(out, Violation{"lost", id})
		}
		for _, c := range copies {
			if !Intact(c, sent[id]) {
				out = append(out, Violation{"a partial or altered copy", fmt.Sprintf("%s: %d bytes, sent %d", id, len(c), len(sent[id]))})
			}
		}
	}
	extra := make([]string, 0)
	for id := range got {
		if _, ok := sent[id]; !ok {
			extra = append(extra, id)
		}
	}
	sort.Strings(extra)
	for _, id := range extra {
		out = append(out, Violation{"a message nobody sent", fmt.Sprintf("%q (%d copies)", id, len(got[id]))})
	}
	return out
}

// Duplicates counts the complete copies beyond the first.
func Duplicates(got map[string][][]byte) int {
	n := 0
	for _, c := range got {
		if len(c) > 1 {
			n += len(c) - 1
		}
	}
	return n
}

var messageID = regexp.MustCompile(`(?mi)^Message-ID:\s*(<[^>\r\n]*>)`)

// ByMessageID indexes messages by their Message-ID header value ("" for a
// message without one).
func ByMessageID(msgs [][]byte) map[string][][]byte {
	out := map[string][][]byte{}
	for _, m := range msgs {
		id := ""
		if sm := messageID.FindSubmatch(m); sm != nil {
			id = string(sm[1])
		}
		out[id] = append(out[id], m)
	}
	return out
}

// Intact reports whether got (as read over IMAP) is the sent message
// complete and alone: it ends with exactly the bytes sent, and what comes
// before them is only trace header fields (Return-Path, Delivered-To,
// Received, Authentication-Results...: Postfix, the sender checks and the
// agent prepend them), not a part of another
// message.
func Intact(got, sent []byte) bool {
	if !bytes.HasSuffix(got, sent) {
		return false
	}
	head := got[:len(got)-len(sent)]
	for _, line := range bytes.SplitAfter(head, []byte("\r\n")) {
		if len(line) == 0 {
			continue
		}
		if !traceLine.Match(line) {
			return false
		}
	}
	return true
}

// traceLine is a header field line a trace header may have: a field name
// such as Return-Path:, or a folded continuation.
var traceLine = regexp.MustCompile(`^(?:(?i:return-path|delivered-to|received|x-original-to|authentication-results):|[ \t])[^\r\n]*\r\n$`)
