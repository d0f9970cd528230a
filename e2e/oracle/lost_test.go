package oracle

import (
	"strings"
	"testing"
)

func TestLost(t *testing.T) {
	a := []byte("Message-ID: <a@e2e>\r\nSubject: a\r\n\r\nbody a\r\n")
	b := []byte("Message-ID: <b@e2e>\r\nSubject: b\r\n\r\nbody b\r\n")
	trace := "Return-Path: <s@outside.example>\r\nDelivered-To: me@e2e.example\r\nAuthentication-Results: mail.e2e.example;\r\n\tspf=none smtp.mailfrom=s@outside.example\r\nReceived: from client\r\n\tby mail.e2e.example\r\n"
	delivered := func(m []byte) []byte { return append([]byte(trace), m...) }
	sent := map[string][]byte{"<a@e2e>": a, "<b@e2e>": b}
	for _, tc := range []struct {
		name string
		got  [][]byte
		want []string
	}{
		{"all there", [][]byte{delivered(a), delivered(b)}, nil},
		{"a complete duplicate is allowed", [][]byte{delivered(a), delivered(a), delivered(b)}, nil},
		{"lost", [][]byte{delivered(a)}, []string{"lost: <b@e2e>"}},
		{"truncated", [][]byte{delivered(a), delivered(b)[:len(trace)+25]}, []string{"a partial or altered copy: <b@e2e>"}},
		{"the tail of b lost", [][]byte{delivered(a), delivered(b[:len(b)-4])}, []string{"a partial or altered copy: <b@e2e>"}},
		{"another message glued before", [][]byte{delivered(a), append([]byte("Subject: x\r\n\r\nother\r\n"), b...)}, []string{"a partial or altered copy: <b@e2e>"}},
		{"a message nobody sent", [][]byte{delivered(a), delivered(b), []byte("Message-ID: <c@e2e>\r\n\r\nc\r\n")}, []string{`a message nobody sent: "<c@e2e>"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Lost(sent, ByMessageID(tc.got))
			if len(got) != len(tc.want) {
				t.Fatalf("violations:\n%s\nwant %d: %v", join(got), len(tc.want), tc.want)
			}
			for i, v := range got {
				if !strings.HasPrefix(v.String(), tc.want[i]) {
					t.Errorf("violation %d: %s, want %s...", i, v, tc.want[i])
				}
			}
		})
	}
	if n := Duplicates(ByMessageID([][]byte{a, a, a, b})); n != 2 {
		t.Errorf("Duplicates: %d, want 2", n)
	}
}
