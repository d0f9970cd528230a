package policy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"strings"
	"testing"

	"quietmx/internal/policy"
)

// FuzzReadRequest: any bytes are read without a panic; a request read back
// from its own encoding is the same; Decide never panics on it.
func FuzzReadRequest(f *testing.F) {
	var b bytes.Buffer
	rcpt("old@example.com").WriteTo(&b)
	f.Add(b.Bytes())
	for _, s := range []string{"", "\n", "a=b\n\n", "a=b\r\n\r\n", "0=\r\r\n\n", "a\n\n", "=\n\n", "a==b\nb=\n\n", "a=b\n", "a=\x00\n\n", strings.Repeat("a=b\n", 200) + "\n", "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=@\n\n"} {
		f.Add([]byte(s))
	}
	set := mustParse(f, refusing)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), policy.MaxLine)
		for {
			req, err := policy.ReadRequest(r)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, policy.ErrMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var enc bytes.Buffer
			req.WriteTo(&enc)
			again, err := policy.ReadRequest(bufio.NewReaderSize(&enc, policy.MaxLine))
			if err != nil || !maps.Equal(req, again) {
				t.Fatalf("round trip: %q → %q → %q (%v)", data, enc.String(), again, err)
			}
			d := policy.Decide(set, req)
			if d.Action != policy.Dunno && !strings.HasPrefix(d.Action, "550 5.1.1 ") {
				t.Fatalf("action %q", d.Action)
			}
		}
	})
}
