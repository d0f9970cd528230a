// Package policy answers Postfix's SMTPD access policy delegation
// (check_policy_service): at each RCPT TO, Postfix sends the recipient and
// the policy service says whether the rules refuse it. An address that
// routes to a reject gets "550 5.1.1 <text>" (or, in reject_mode log, a
// "would reject" log line and DUNNO); everything else gets DUNNO, which
// leaves the decision to the rest of Postfix's restrictions.
//
// PROTOCOL
// Postfix's SMTPD_POLICY_README: a request is name=value lines ended by an
// empty line; the reply is one "action=..." line and an empty line. The
// connection stays open for the next request (Postfix reuses it for many
// SMTP sessions). In case of trouble (a malformed request) the server
// replies nothing, logs a warning and disconnects; Postfix then applies
// the check's default_action, which the appliance sets to DUNNO, so an
// unreachable or broken policy service never defers or refuses mail.
//
// SECURITY
// Requests are bounded (line length, attribute count) and read with an
// idle timeout, so a stuck or hostile client cannot hold memory or
// goroutines for ever. Nothing of a message body ever reaches this
// service, and the log lines hold envelope data only.
package policy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Limits of one request. Postfix sends about 30 attributes, each well
// under its SMTP line limit (2048 bytes).
const (
	MaxLine  = 8192 // bytes in one name=value line, newline included
	MaxAttrs = 128  // attributes in one request
)

// ErrMalformed marks a request that breaks the protocol: the server
// disconnects without a reply.
var ErrMalformed = errors.New("malformed policy request")

// Request is one policy request's attributes. A repeated attribute keeps
// its last value (the protocol allows the first or the last).
type Request map[string]string

// Actions the service replies with.
const Dunno = "DUNNO"

// ReadRequest reads one request from r, which must have been made with
// bufio.NewReaderSize(conn, MaxLine) or larger. It returns io.EOF when the
// client closed the connection between requests, and an error wrapping
// ErrMalformed (or the read error) otherwise.
func ReadRequest(r *bufio.Reader) (Request, error) {
	req := Request{}
	lines := 0
	for {
		line, err := r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull) || (err == nil && len(line) > MaxLine):
			return nil, fmt.Errorf("%w: a line is longer than %d bytes", ErrMalformed, MaxLine)
		case err == io.EOF && len(line) == 0 && lines == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, fmt.Errorf("%w: the connection closed inside a request: %w", ErrMalformed, io.ErrUnexpectedEOF)
		case err != nil:
			return nil, err
		}
		lines++
		// Postfix ends lines with \n alone; a \r is part of the value.
		line = line[:len(line)-1]
		if len(line) == 0 {
			return req, nil
		}
		if lines > MaxAttrs {
			return nil, fmt.Errorf("%w: more than %d attributes", ErrMalformed, MaxAttrs)
		}
		name, value, ok := bytes.Cut(line, []byte{'='})
		if !ok || len(name) == 0 {
			return nil, fmt.Errorf("%w: line %d is not name=value: %.40q", ErrMalformed, lines, line)
		}
		if bytes.IndexByte(line, 0) >= 0 {
			return nil, fmt.Errorf("%w: line %d holds a NUL byte", ErrMalformed, lines)
		}
		req[string(name)] = string(value)
	}
}

// WriteTo writes the request as Postfix sends it (attributes sorted), for
// tests and tools.
func (req Request) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	names := make([]string, 0, len(req))
	for n := range req {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte('=')
		b.WriteString(req[n])
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// reply is the protocol's answer for an action.
func reply(action string) []byte { return []byte("action=" + action + "\n\n") }
