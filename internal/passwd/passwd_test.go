package passwd

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// zeros is a deterministic salt source for reproducible hashes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// cheap keeps the tests fast (argon2 at 64 MiB takes seconds under -race);
// TestDoveadmVerifies checks the real parameters.
var cheap = Params{Memory: 64, Time: 1, Threads: 1}

func TestHashVerify(t *testing.T) {
	t.Parallel()
	h, err := HashWith([]byte("correct horse"), nil, cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("HashWith = %q, want the doveadm ARGON2ID form", h)
	}
	if err := Check(h); err != nil {
		t.Fatalf("Check(Hash()) = %v", err)
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{{"correct horse", true}, {"correct horse ", false}} {
		ok, err := Verify(h, []byte(tc.pw))
		if err != nil || ok != tc.want {
			t.Errorf("Verify(%q) = %v, %v; want %v", tc.pw, ok, err, tc.want)
		}
	}
	if _, err := Verify("{SHA512-CRYPT}$6$x$y", []byte("x")); err != ErrUnsupported {
		t.Errorf("Verify(SHA512-CRYPT) err = %v, want ErrUnsupported", err)
	}
}

func TestHashDeterministicSalt(t *testing.T) {
	t.Parallel()
	a, _ := HashWith([]byte("pw"), zeros{}, cheap)
	if !strings.Contains(a, "$AAAAAAAAAAAAAAAAAAAAAA$") {
		t.Fatalf("Hash with a zero salt = %q, want salt AAAA...", a)
	}
}

// TestDoveadmVerifies checks that Dovecot itself accepts our hash. doveadm
// comes from internal/render/install-tools.sh; a missing doveadm fails.
func TestDoveadmVerifies(t *testing.T) {
	t.Parallel()
	doveadm, err := exec.LookPath("doveadm")
	if err != nil {
		t.Fatal("doveadm not found: run internal/render/install-tools.sh")
	}
	h, err := Hash([]byte("s3cret pass"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$") {
		t.Fatalf("Hash = %q, want doveadm's parameters", h)
	}
	out, err := exec.Command(doveadm, "pw", "-t", h, "-p", "s3cret pass").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("(verified)")) {
		t.Fatalf("doveadm pw -t: %v\n%s", err, out)
	}
	// Cheap parameters verify in Dovecot too.
	hc, _ := HashWith([]byte("s3cret pass"), nil, cheap)
	out, err = exec.Command(doveadm, "pw", "-t", hc, "-p", "s3cret pass").CombinedOutput()
	if err != nil {
		t.Fatalf("doveadm pw -t %s: %v\n%s", hc, err, out)
	}
	out, err = exec.Command(doveadm, "pw", "-t", hc, "-p", "wrong").CombinedOutput()
	if err == nil {
		t.Fatalf("doveadm pw -t accepted a wrong password:\n%s", out)
	}
	// And the reverse: we verify what doveadm makes.
	out, err = exec.Command(doveadm, "pw", "-s", "ARGON2ID", "-p", "s3cret pass").Output()
	if err != nil {
		t.Fatalf("doveadm pw -s ARGON2ID: %v", err)
	}
	dh := strings.TrimSpace(string(out))
	if err := Check(dh); err != nil {
		t.Fatalf("Check(%q) = %v", dh, err)
	}
	if ok, err := Verify(dh, []byte("s3cret pass")); !ok || err != nil {
		t.Fatalf("Verify(doveadm hash %q) = %v, %v", dh, ok, err)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct{ hash, want string }{
		{"{SHA512-CRYPT}$6$rounds=5000$abc$def", ""},
		{"{BLF-CRYPT}$2y$05$abc", ""},
		{"{PLAIN}secret", "{PLAIN} is a plaintext password and is refused: put the password in password_file, or hash it with quietmx passwd"},
		{"{cleartext}secret", "{CLEARTEXT} is a plaintext password and is refused: put the password in password_file, or hash it with quietmx passwd"},
		{"{MD5-CRYPT}$1$x", "scheme {MD5-CRYPT} is unknown or too weak (want one of {ARGON2ID}, {ARGON2I}, {BLF-CRYPT}, {SHA512-CRYPT}, {SHA256-CRYPT}; quietmx passwd makes {ARGON2ID})"},
		{"$6$abc$def", "want a Dovecot scheme prefix such as {ARGON2ID} (quietmx passwd makes one)"},
		{"{ARGON2ID}$6$abc", "{ARGON2ID} hash must start with $argon2id$"},
		{"{ARGON2ID}$argon2id$v=19:x", "a password hash has no spaces or colons"},
	} {
		err := Check(tc.hash)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("Check(%q) = %q, want %q", tc.hash, got, tc.want)
		}
	}
}

func TestReadSecret(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"pw\n", "pw", ""},
		{"pw\r\n", "pw", ""},
		{"p w", "p w", ""},
		{"\n", "", "the password file is empty"},
		{"a\nb\n", "", "the password file has more than one line"},
	} {
		got, err := ReadSecret([]byte(tc.in))
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if string(got) != tc.want || gotErr != tc.err {
			t.Errorf("ReadSecret(%q) = %q, %q; want %q, %q", tc.in, got, gotErr, tc.want, tc.err)
		}
	}
}
