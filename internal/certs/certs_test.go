package certs_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"quietmx/internal/certs"
)

func TestEnsureSelfSigned(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls/cert.pem"), filepath.Join(dir, "tls/key.pem")
	now := time.Now()
	made, err := certs.EnsureSelfSigned(cert, key, "mail.example.com", now)
	if err != nil || !made {
		t.Fatalf("first start: made=%v err=%v", made, err)
	}
	if err := certs.CheckPair(cert, key); err != nil {
		t.Fatal(err)
	}
	// Written through atomicfile: only the pair, no temporary file left.
	if entries, _ := os.ReadDir(filepath.Dir(cert)); len(entries) != 2 {
		t.Errorf("tls directory holds %d entries, want cert.pem and key.pem only", len(entries))
	}
	st, _ := os.Stat(key)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
	info, err := certs.Read(cert)
	if err != nil || info.DNSNames[0] != "mail.example.com" || certs.DaysLeft(info, now) < 800 {
		t.Fatalf("info %+v err %v", info, err)
	}
	// Kept across restarts.
	if made, err := certs.EnsureSelfSigned(cert, key, "mail.example.com", now); err != nil || made {
		t.Errorf("second start regenerated: made=%v err=%v", made, err)
	}
	// A new host name, or near expiry, makes a new one.
	if made, _ := certs.EnsureSelfSigned(cert, key, "mx.example.org", now); !made {
		t.Errorf("hostname change did not regenerate")
	}
	if made, _ := certs.EnsureSelfSigned(cert, key, "mx.example.org", now.Add(certs.SelfSignedLifetime-time.Hour)); !made {
		t.Errorf("near expiry did not regenerate")
	}
	// A damaged key is replaced.
	os.WriteFile(key, []byte("garbage"), 0o600)
	if made, _ := certs.EnsureSelfSigned(cert, key, "mx.example.org", now); !made {
		t.Errorf("broken key not replaced")
	}
	info2, _ := certs.Read(cert)
	if info2.Fingerprint == info.Fingerprint {
		t.Errorf("fingerprint unchanged")
	}
}
