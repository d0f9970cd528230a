package message_test

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"quietmx/internal/message"
)

func TestRead(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789\r\n\x00\xff"), 1<<20)
	for name, in := range map[string][]byte{"empty": nil, "small": []byte("Subject: x\n\nbody\n"), "14 MiB": big} {
		for _, wrap := range []func(io.Reader) io.Reader{
			func(r io.Reader) io.Reader { return r },
			iotest.OneByteReader, // a pipe delivering tiny reads
			iotest.HalfReader,
		} {
			got, err := message.Read(wrap(bytes.NewReader(in)))
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("%s: got %d bytes, err %v; want %d bytes", name, len(got), err, len(in))
			}
			if name == "14 MiB" {
				break // one-byte reads of 14 MiB would only be slow
			}
		}
	}
	if _, err := message.Read(iotest.ErrReader(io.ErrUnexpectedEOF)); err == nil {
		t.Errorf("a read error must be reported")
	}
	if _, err := message.Read(strings.NewReader("x")); err != nil {
		t.Error(err)
	}
}
