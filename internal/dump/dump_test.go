package dump_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"quietmx/internal/dump"
)

// Message bodies in the encodings Japanese mail really uses.
var (
	utf8Mail = []byte("Subject: =?UTF-8?B?44GT44KT44Gr44Gh44Gv?=\nContent-Type: text/plain; charset=UTF-8\n\nこんにちは、世界\n\u2028<tag> & \"quotes\" \\ \t\n")
	// ISO-2022-JP is 7-bit: ESC $ B ... ESC ( B around JIS X 0208.
	iso2022jpMail = []byte("Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n\x1b$B$3$s$K$A$O\x1b(B\r\n")
	// Shift_JIS: こんにちは is 82 B1 82 F1 82 C9 82 BF 82 CD, not UTF-8.
	sjisMail = []byte("Subject: sjis\nContent-Type: text/plain; charset=Shift_JIS\n\n\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd\n")
	rawMail  = []byte("Subject: latin1 caf\xe9\n\n\x80\x81\xfe\xff\xc0\xaf\xed\xa0\x80\n")
	nulMail  = []byte("Subject: nul\n\nbefore\x00after\x00\x00\r\n")
)

// bigMIME is a realistic large message: headers and a base64 attachment,
// CRLF lines, valid UTF-8 (escapes and NUL are covered by the small cases:
// under -race, JSON-escaping megabytes of control bytes takes seconds).
func bigMIME(size int) []byte {
	b := []byte("Subject: big\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	line := []byte("VGhpcyBpcyBhIGJhc2U2NCBsaW5lIG9mIGEgTUlNRSBhdHRhY2htZW50IGxpbmUgb2YgNzYgY2hh\r\n")
	for len(b) < size {
		b = append(b, line[:min(len(line), size-len(b))]...)
	}
	return b
}

// bigBinary is size bytes of every value, CR, LF and NUL included.
func bigBinary(size int) []byte {
	block := make([]byte, 4096)
	for i := range block {
		block[i] = byte(i*31 + i>>9)
	}
	b := bytes.Repeat(block, size/len(block)+1)[:size]
	b[size-1] = 0xff // never valid UTF-8, however the block is changed
	return b
}

// hasKey reports whether the encoded dump has the top-level key. A plain
// byte search is exact: inside a JSON string every '"' is escaped, so
// `"key":` can only be a key. (Parsing megabytes again is slow under -race.)
func hasKey(data []byte, key string) bool {
	return bytes.Contains(data, []byte(`"`+key+`":`))
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name       string
		d          dump.Dump
		wantBase64 bool // the mail must go to mail_base64, not mail
	}{
		{"UTF-8", dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: utf8Mail}, false},
		{"ISO-2022-JP (7-bit)", dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: iso2022jpMail}, false},
		{"Shift_JIS", dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: sjisMail}, true},
		{"raw 8-bit", dump.Dump{Sender: "a@b", Recipients: []string{"x@y", "z@w"}, Recipient: "x@y", Mail: rawMail}, true},
		{"NUL bytes (valid UTF-8)", dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: nulMail}, false},
		{"empty message", dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte{}}, false},
		{"null sender", dump.Dump{Sender: "", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("x")}, false},
		{"UTF-8 addresses", dump.Dump{Sender: "送信者@例え.jp", Recipients: []string{"受信者@例え.jp"}, Recipient: "受信者@例え.jp", Mail: []byte("x")}, false},
		{"no recipient field value", dump.Dump{Sender: "a@b", Recipients: []string{"x@y", "z@w"}, Recipient: "", Mail: []byte("x")}, false},
		{"invalid UTF-8 at the very end", dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("ok\xe3\x81")}, true},
		{"5 MiB UTF-8", dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: bigMIME(5 << 20)}, false},
		{"5 MiB binary", dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: bigBinary(5 << 20)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.d.Mail) > 1<<20 {
				t.Parallel() // the big ones are CPU-bound under -race
			}
			if got := !utf8.Valid(tt.d.Mail); got != tt.wantBase64 {
				t.Fatalf("bad test: utf8.Valid(mail) = %v", !got)
			}
			data, err := dump.Encode(tt.d)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			hasMail, hasB64 := hasKey(data, "mail"), hasKey(data, "mail_base64")
			if hasMail == tt.wantBase64 || hasB64 != tt.wantBase64 {
				t.Errorf("Encode wrote mail=%v mail_base64=%v, want mail_base64=%v", hasMail, hasB64, tt.wantBase64)
			}
			for _, k := range []string{"sender", "recipients", "recipient"} {
				if !hasKey(data, k) {
					t.Errorf("Encode wrote no %q field (the original's format has it)", k)
				}
			}
			got, err := dump.Decode(data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !bytes.Equal(got.Mail, tt.d.Mail) {
				t.Errorf("Mail differs after round trip (%d bytes, want %d)", len(got.Mail), len(tt.d.Mail))
			}
			if got.Sender != tt.d.Sender || got.Recipient != tt.d.Recipient || !reflect.DeepEqual(got.Recipients, tt.d.Recipients) {
				t.Errorf("envelope = %q %q %q, want %q %q %q", got.Sender, got.Recipients, got.Recipient,
					tt.d.Sender, tt.d.Recipients, tt.d.Recipient)
			}
		})
	}
}

func TestEncodeFormat(t *testing.T) {
	// Like the original (Ruby's JSON.generate): one object, "<>&" not
	// HTML-escaped, so an operator can grep a dump.
	data, err := dump.Encode(dump.Dump{Sender: "a<b>&c@d", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("<html>&amp;</html>\n")})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"sender":"a<b>&c@d"`, `"recipients":["x@y"]`, `"recipient":"x@y"`, `"mail":"<html>&amp;</html>\n"`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("Encode = %s, want it to contain %s", data, want)
		}
	}
	// nil Recipients is written as a list, never null.
	data, err = dump.Encode(dump.Dump{Recipient: "x@y", Mail: []byte("m")})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"recipients":[]`)) {
		t.Errorf("Encode(nil recipients) = %s, want \"recipients\":[]", data)
	}
}

// TestDecodeOriginal decodes dumps as the Ruby AltPostLocal writes them.
func TestDecodeOriginal(t *testing.T) {
	tests := []struct {
		name string
		json string
		want dump.Dump
	}{
		{"original", `{"sender":"a@b","recipients":["x@y"],"recipient":"x@y","mail":"Subject: hi\n\nbody\n"}`,
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("Subject: hi\n\nbody\n")}},
		{"null sender", `{"sender":null,"recipients":["x@y"],"recipient":"x@y","mail":"m"}`,
			dump.Dump{Sender: "", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("m")}},
		{"empty sender", `{"sender":"","recipients":["x@y"],"recipient":"x@y","mail":"m"}`,
			dump.Dump{Sender: "", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("m")}},
		{"recipients a single string", `{"sender":"a@b","recipients":"x@y","recipient":"x@y","mail":"m"}`,
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("m")}},
		{"recipients a single string, no recipient key", `{"sender":"a@b","recipients":"x@y","mail":"m"}`,
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Mail: []byte("m")}},
		{"several recipients", `{"sender":"a@b","recipients":["x@y","z@w"],"recipient":"z@w","mail":"m"}`,
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y", "z@w"}, Recipient: "z@w", Mail: []byte("m")}},
		{"no recipients key: recipient", `{"sender":"a@b","recipient":"x@y","mail":"m"}`,
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("m")}},
		{"recipients null: recipient", `{"sender":"a@b","recipients":null,"recipient":"x@y","mail":"m"}`,
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("m")}},
		{"no sender key", `{"recipients":["x@y"],"mail":"m"}`,
			dump.Dump{Recipients: []string{"x@y"}, Mail: []byte("m")}},
		{"key order and whitespace", "{\n  \"mail\" : \"m\",\n  \"recipient\" : \"x@y\",\n  \"recipients\" : [ \"x@y\" ],\n  \"sender\" : \"a@b\"\n}\n",
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("m")}},
		{"unknown keys ignored", `{"sender":"a@b","recipients":["x@y"],"recipient":"x@y","mail":"m","version":2,"extra":{"a":[1]}}`,
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("m")}},
		{"escapes: CRLF, ESC, NUL, slash, surrogate pair", `{"sender":"a@b","recipients":["x@y"],"recipient":"x@y","mail":"A: b\r\n\r\n\u001b$B$3\u001b(B\u0000\/\ud83d\udce7"}`,
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("A: b\r\n\r\n\x1b$B$3\x1b(B\x00/\U0001F4E7")}},
		{"raw UTF-8 Japanese", `{"sender":"a@b","recipients":["x@y"],"recipient":"x@y","mail":"件名: テスト\n\n本文\n"}`,
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte("件名: テスト\n\n本文\n")}},
		{"empty mail", `{"sender":"a@b","recipients":["x@y"],"recipient":"x@y","mail":""}`,
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: []byte{}}},
		{"mail_base64 wins over mail", `{"sender":"a@b","recipients":["x@y"],"mail":"lossy","mail_base64":"gqA="}`,
			dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Mail: []byte("\x82\xa0")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dump.Decode([]byte(tt.json))
			if err != nil {
				t.Fatalf("Decode(%s): %v", tt.json, err)
			}
			if got.Sender != tt.want.Sender || got.Recipient != tt.want.Recipient ||
				!reflect.DeepEqual(got.Recipients, tt.want.Recipients) || !bytes.Equal(got.Mail, tt.want.Mail) {
				t.Errorf("Decode(%s)\n = %+q\nwant %+q", tt.json, got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, json, want string // want: a substring of the error
	}{
		{"missing mail", `{"sender":"a@b","recipients":["x@y"],"recipient":"x@y"}`, "no mail"},
		{"mail null", `{"sender":"a@b","recipients":["x@y"],"mail":null}`, "no mail"},
		{"mail not a string", `{"sender":"a@b","recipients":["x@y"],"mail":42}`, "dump"},
		{"bad base64", `{"sender":"a@b","recipients":["x@y"],"mail_base64":"not base64!"}`, "mail_base64"},
		{"truncated base64", `{"sender":"a@b","recipients":["x@y"],"mail_base64":"gqA"}`, "mail_base64"},
		{"empty recipients, no recipient", `{"sender":"a@b","recipients":[],"mail":"m"}`, "no recipients"},
		{"no recipients at all", `{"sender":"a@b","mail":"m"}`, "no recipients"},
		{"empty recipient only", `{"sender":"a@b","recipients":[],"recipient":"","mail":"m"}`, "no recipients"},
		{"recipients a number", `{"sender":"a@b","recipients":5,"mail":"m"}`, "recipients"},
		{"recipients with a number", `{"sender":"a@b","recipients":["x@y",5],"mail":"m"}`, "recipients"},
		{"recipients an object", `{"sender":"a@b","recipients":{"x":"y"},"mail":"m"}`, "recipients"},
		{"sender a number", `{"sender":1,"recipients":["x@y"],"mail":"m"}`, "dump"},
		{"not JSON", `Return-Path: <a@b>` + "\n\nbody", "dump"},
		{"truncated JSON", `{"sender":"a@b","recipients":["x@y"],"mail":"m`, "dump"},
		{"a JSON list", `[{"mail":"m"}]`, "dump"},
		{"JSON null", `null`, "dump"},
		{"empty input", ``, "dump"},
		{"trailing garbage", `{"sender":"a@b","recipients":["x@y"],"mail":"m"} {}`, "dump"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := dump.Decode([]byte(tt.json))
			if err == nil {
				t.Fatalf("Decode(%s) = %+q, nil; want an error containing %q", tt.json, d, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode(%s) error %q, want it to contain %q", tt.json, err, tt.want)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	d := dump.Dump{Sender: "a@b", Recipients: []string{"x@y"}, Recipient: "x@y", Mail: sjisMail}
	t.Run("creates the directory and a .json file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "dumps", "sub")
		path, err := dump.Write(dir, d)
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		if filepath.Dir(path) != dir || !strings.HasSuffix(path, ".json") {
			t.Errorf("Write = %s, want a .json file in %s", path, dir)
		}
		es, _ := os.ReadDir(dir)
		if len(es) != 1 || es[0].Name() != filepath.Base(path) {
			t.Errorf("dir holds %v, want only %s (no temporary left)", es, filepath.Base(path))
		}
		st, err := os.Stat(dir)
		if err != nil || st.Mode() != fs.ModeDir|0o700 {
			t.Errorf("dump dir: %v, %v; want mode drwx------", st, err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dump.Decode(data)
		if err != nil || !bytes.Equal(got.Mail, d.Mail) || got.Sender != d.Sender || !reflect.DeepEqual(got.Recipients, d.Recipients) {
			t.Errorf("Decode(written file) = %+q, %v; want %+q", got, err, d)
		}
	})
	t.Run("two writes, two files", func(t *testing.T) {
		dir := t.TempDir()
		p1, err1 := dump.Write(dir, d)
		p2, err2 := dump.Write(dir, d)
		if err1 != nil || err2 != nil || p1 == p2 {
			t.Errorf("Write twice = %s, %v; %s, %v; want two files", p1, err1, p2, err2)
		}
	})
	t.Run("relative dir refused", func(t *testing.T) {
		cwd := t.TempDir()
		t.Chdir(cwd)
		if p, err := dump.Write("dumps", d); err == nil {
			t.Errorf("Write(relative) = %s, nil; want an error", p)
		}
		if es, _ := os.ReadDir(cwd); len(es) != 0 {
			t.Errorf("Write(relative) created %v", es)
		}
	})
	t.Run("WriteRescue needs an existing dir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "rescue")
		if p, err := dump.WriteRescue(dir, d); err == nil {
			t.Errorf("WriteRescue(missing) = %s, nil; want an error", p)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("WriteRescue created %s", dir)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		path, err := dump.WriteRescue(dir, d)
		if err != nil || !strings.HasSuffix(path, ".json") || filepath.Dir(path) != dir {
			t.Fatalf("WriteRescue = %s, %v; want a .json file in %s", path, err, dir)
		}
		data, _ := os.ReadFile(path)
		if got, err := dump.Decode(data); err != nil || !bytes.Equal(got.Mail, d.Mail) {
			t.Errorf("rescued dump does not decode to the message: %v", err)
		}
	})
	t.Run("unwritable: parent is a regular file", func(t *testing.T) {
		base := t.TempDir()
		if err := os.WriteFile(filepath.Join(base, "f"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if p, err := dump.Write(filepath.Join(base, "f", "dumps"), d); err == nil {
			t.Errorf("Write = %s, nil; want an error", p)
		}
	})
}
