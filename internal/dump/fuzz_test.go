package dump_test

import (
	"bytes"
	"reflect"
	"testing"

	"quietmx/internal/dump"
)

// FuzzDumpRoundTrip: any message bytes and any envelope survive Encode and
// Decode. Seeds: testdata/fuzz/FuzzDumpRoundTrip/.
//
// The message and the envelope always round-trip byte for byte: bytes a
// JSON string cannot carry go in mail_base64 and envelope_base64.
func FuzzDumpRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, mail []byte, sender, r1, r2 string) {
		in := dump.Dump{Sender: sender, Recipients: []string{r1, r2}, Recipient: r1, Mail: mail}
		data, err := dump.Encode(in)
		if err != nil {
			t.Fatalf("Encode(%+q): %v", in, err)
		}
		out, err := dump.Decode(data)
		if err != nil {
			t.Fatalf("Decode(Encode(%+q)): %v\n%s", in, err, data)
		}
		if !bytes.Equal(out.Mail, mail) {
			t.Fatalf("mail changed: %q -> %q", mail, out.Mail)
		}
		if out.Sender != sender || out.Recipient != r1 || !reflect.DeepEqual(out.Recipients, in.Recipients) {
			t.Fatalf("envelope changed: %+q -> %+q", in, out)
		}
	})
}

// FuzzDecode: Decode never panics on any input, and whatever it accepts
// re-encodes to a dump that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"sender":"a@b","recipients":["x@y"],"recipient":"x@y","mail":"Subject: hi\n\nbody\n"}`,
		`{"sender":null,"recipients":"x@y","recipient":"x@y","mail":"m"}`,
		`{"sender":"","recipients":[],"recipient":"x@y","mail_base64":"gqCCoA=="}`,
		`{"recipients":["x@y"],"mail":"\u001b$B$3\u001b(B\u0000"}`,
		`{"mail":"m"}`, `[]`, `null`, `{"recipients":[1]}`, `{"mail_base64":"!"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := dump.Decode(data)
		if err != nil {
			return
		}
		if len(d.Recipients) == 0 {
			t.Fatalf("Decode(%q) accepted a dump without recipients", data)
		}
		again, err := dump.Encode(d)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)): %v", data, err)
		}
		d2, err := dump.Decode(again)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))): %v", data, err)
		}
		if d2.Sender != d.Sender || d2.Recipient != d.Recipient || !reflect.DeepEqual(d2.Recipients, d.Recipients) || !bytes.Equal(d2.Mail, d.Mail) {
			t.Fatalf("re-encoding changed the dump: %+q -> %+q", d, d2)
		}
	})
}
