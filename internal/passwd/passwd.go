// Package passwd makes and checks the password hashes Dovecot reads from a
// passwd-file: "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$SALT$HASH", the
// PHC string libsodium (and so Dovecot's ARGON2ID scheme) verifies, with
// the parameters `doveadm pw -s ARGON2ID` uses.
//
// It also classifies the schemes a spec may carry: a plaintext scheme
// ({PLAIN}, {CLEARTEXT}...) or a weak one ({MD5-CRYPT}, unsalted {SHA}...)
// is refused, so no password that can be read back lands in a rendered file.
//
// SECURITY
// The salt comes from crypto/rand unless the caller passes another reader
// (tests do, for reproducible golden files). Verify compares in constant
// time.
package passwd

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8  // lanes
}

// DefaultParams are those of `doveadm pw -s ARGON2ID` (Dovecot 2.3, from
// libsodium's "moderate" limits): 64 MiB, 3 passes, 1 lane.
var DefaultParams = Params{Memory: 64 * 1024, Time: 3, Threads: 1}

// Salt and key lengths, as doveadm makes them.
const (
	SaltLen = 16
	KeyLen  = 32
)

// Recommended is the scheme Hash produces.
const Recommended = "ARGON2ID"

// strong lists the schemes a spec may use, with the prefix of the hash that
// follows the {SCHEME} tag (a sanity check against a pasted wrong value).
var strong = map[string][]string{
	"ARGON2ID":     {"$argon2id$"},
	"ARGON2I":      {"$argon2i$"},
	"BLF-CRYPT":    {"$2y$", "$2b$", "$2a$"},
	"SHA512-CRYPT": {"$6$"},
	"SHA256-CRYPT": {"$5$"},
}

// plaintext schemes store the password itself, or something as good as it.
var plaintext = map[string]bool{
	"PLAIN": true, "CLEAR": true, "CLEARTEXT": true, "PLAIN-TRUNC": true,
}

// StrongSchemes lists the accepted schemes, strongest first.
func StrongSchemes() []string {
	return []string{"ARGON2ID", "ARGON2I", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT"}
}

// Check reports why hash cannot be put in a passwd-file, or nil. It accepts
// only the strong salted schemes Dovecot 2.3 verifies.
func Check(hash string) error {
	if strings.ContainsAny(hash, ": \t\r\n") {
		return errors.New("a password hash has no spaces or colons")
	}
	scheme, body, ok := split(hash)
	if !ok {
		return errors.New("want a Dovecot scheme prefix such as {ARGON2ID} (quietmx passwd makes one)")
	}
	if plaintext[scheme] {
		return fmt.Errorf("{%s} is a plaintext password and is refused: put the password in password_file, or hash it with quietmx passwd", scheme)
	}
	prefixes, ok := strong[scheme]
	if !ok {
		return fmt.Errorf("scheme {%s} is unknown or too weak (want one of %s; quietmx passwd makes {ARGON2ID})", scheme, "{"+strings.Join(StrongSchemes(), "}, {")+"}")
	}
	for _, p := range prefixes {
		if strings.HasPrefix(body, p) {
			return nil
		}
	}
	return fmt.Errorf("{%s} hash must start with %s", scheme, strings.Join(prefixes, " or "))
}

// split cuts "{SCHEME}body" into SCHEME (upper case) and body.
func split(hash string) (scheme, body string, ok bool) {
	rest, ok := strings.CutPrefix(hash, "{")
	if !ok {
		return "", "", false
	}
	scheme, body, ok = strings.Cut(rest, "}")
	if !ok || scheme == "" || body == "" {
		return "", "", false
	}
	return strings.ToUpper(scheme), body, true
}

// Hash returns the {ARGON2ID} hash of password with DefaultParams and a
// fresh salt read from random (crypto/rand when nil). It fails only when
// random fails.
func Hash(password []byte, random io.Reader) (string, error) {
	return HashWith(password, random, DefaultParams)
}

// HashWith is Hash with other cost parameters (tests use cheap ones; the
// result still verifies in Dovecot as long as libsodium's minimums, 8 KiB
// and 1 pass, are met). Zero parameters mean DefaultParams.
func HashWith(password []byte, random io.Reader, p Params) (string, error) {
	if p == (Params{}) {
		p = DefaultParams
	}
	if random == nil {
		random = rand.Reader
	}
	salt := make([]byte, SaltLen)
	if _, err := io.ReadFull(random, salt); err != nil {
		return "", fmt.Errorf("read salt: %w", err)
	}
	key := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, KeyLen)
	return fmt.Sprintf("{ARGON2ID}$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// b64 is the PHC string's base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// ErrUnsupported means Verify cannot check this scheme (only Dovecot can).
var ErrUnsupported = errors.New("only {ARGON2ID} hashes can be verified here")

// Verify reports whether password matches an {ARGON2ID} hash. Other
// schemes return ErrUnsupported; a malformed hash is an error.
func Verify(hash string, password []byte) (bool, error) {
	scheme, body, ok := split(hash)
	if !ok || scheme != "ARGON2ID" {
		return false, ErrUnsupported
	}
	// $argon2id$v=19$m=65536,t=3,p=1$SALT$KEY
	parts := strings.Split(body, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, errors.New("malformed ARGON2ID hash")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("unsupported argon2 version %q", parts[2])
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 {
		return false, fmt.Errorf("malformed argon2 parameters %q", parts[3])
	}
	// Refuse parameters that would make verifying a denial of service.
	if m > 4*1024*1024 || t > 100 {
		return false, fmt.Errorf("argon2 parameters %q too large", parts[3])
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("malformed argon2 salt: %w", err)
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 || len(want) > 1024 {
		return false, errors.New("malformed argon2 key")
	}
	got := argon2.IDKey(password, salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// ReadSecret returns the password stored in a secret file's bytes: the
// content without its trailing line ending(s), since `echo pw > file`
// and Docker secrets made that way end in a newline that is not part of
// the password. An empty password, or one with a line break inside, is an
// error.
func ReadSecret(data []byte) ([]byte, error) {
	pw := bytes.TrimRight(data, "\r\n")
	if len(pw) == 0 {
		return nil, errors.New("the password file is empty")
	}
	if bytes.ContainsAny(pw, "\r\n") {
		return nil, errors.New("the password file has more than one line")
	}
	return pw, nil
}
