package message_test

import (
	"bytes"
	"testing"

	"quietmx/internal/message"
)

func TestFromWire(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", ""},
		{"LF untouched", "a\nb\n", "a\nb\n"},
		{"CRLF", "a\r\nb\r\n", "a\nb\n"},
		{"bare CR kept", "a\rb\r\n", "a\rb\n"},
		{"CR CR LF", "a\r\r\n", "a\r\n"},
		{"trailing CR", "a\r", "a\r"},
		{"8-bit and NUL", "\xff\x00\r\n", "\xff\x00\n"},
	}
	for _, tt := range tests {
		if got := message.FromWire([]byte(tt.in)); string(got) != tt.want {
			t.Errorf("%s: FromWire(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestQueueID(t *testing.T) {
	tests := []struct{ name, msg, want string }{
		{"smtpd", "Received: from c (c [192.0.2.1])\n\tby mx (Postfix) with ESMTPS id 4XyZ12AbC\n\tfor <a@x>; Mon, 30 Nov 2026\nSubject: s\n\nb\n", "4XyZ12AbC"},
		{"pickup", "Received: by mx (Postfix, from userid 0)\n\tid 3F2A1B; Mon, 30 Nov 2026\n\nb\n", "3F2A1B"},
		{"id at end of line", "Received: by mx (Postfix) id ABC123\n\nb\n", "ABC123"},
		{"first Received only", "Received: by a\nReceived: by b (Postfix) id OTHER1\n\nb\n", ""},
		{"none", "Subject: s\n\nReceived: by mx id INBODY\n", ""},
		{"not alphanumeric", "Received: by mx id a\"b=c\n\n", ""},
		{"CRLF", "Received: by mx (Postfix)\r\n\tid QQ1; x\r\n\r\n", "QQ1"},
		{"id last word", "Received: by mx id\n\n", ""},
	}
	for _, tt := range tests {
		if got := message.QueueID([]byte(tt.msg)); got != tt.want {
			t.Errorf("%s: QueueID = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func FuzzFromWire(f *testing.F) {
	f.Add([]byte("a\r\nb\rc\r\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		want := bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n"))
		if got := message.FromWire(bytes.Clone(in)); !bytes.Equal(got, want) {
			t.Fatalf("FromWire(%q) = %q, want %q", in, got, want)
		}
	})
}

func FuzzQueueID(f *testing.F) {
	f.Add([]byte("Received: by mx (Postfix) id ABC123; x\n\nb\n"))
	f.Add([]byte("Received:\n id\n\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		id := message.QueueID(msg)
		if len(id) > 64 || bytes.ContainsAny([]byte(id), " \t\r\n=\";") {
			t.Fatalf("QueueID = %q: not a plain token", id)
		}
	})
}
