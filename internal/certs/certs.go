// Package certs makes and reads the appliance's TLS certificate: a
// self-signed one generated at first start (so the appliance starts
// anywhere, with a key of its own, never one baked into the image) and the
// facts health and the supervisor need about any certificate in use.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"

	"quietmx/internal/atomicfile"
)

// SelfSignedLifetime is how long a generated certificate is valid; it is
// renewed at start when less than RenewBefore remains.
const (
	SelfSignedLifetime = 825 * 24 * time.Hour
	RenewBefore        = 30 * 24 * time.Hour
)

// Info describes a certificate file.
type Info struct {
	NotAfter    time.Time
	DNSNames    []string
	Fingerprint string // SHA-256 of the leaf, hex
	Issuer      string // the issuer's common name (self-signed: the host name)
}

// Read parses the first certificate of a PEM file.
func Read(certFile string) (Info, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return Info{}, err
	}
	block, _ := pem.Decode(data)
	for block != nil && block.Type != "CERTIFICATE" {
		block, data = pem.Decode(data)
	}
	if block == nil {
		return Info{}, fmt.Errorf("%s: no PEM certificate", certFile)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", certFile, err)
	}
	sum := sha256.Sum256(c.Raw)
	return Info{NotAfter: c.NotAfter, DNSNames: c.DNSNames, Fingerprint: hex.EncodeToString(sum[:]), Issuer: c.Issuer.CommonName}, nil
}

// CheckPair verifies that the key matches the certificate (what Postfix and
// Dovecot will refuse to start on).
func CheckPair(certFile, keyFile string) error {
	_, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("certificate %s / key %s: %w", certFile, keyFile, err)
	}
	return nil
}

// EnsureSelfSigned makes sure certFile/keyFile hold a valid certificate for
// hostname, generating a new self-signed pair when they are missing,
// unreadable, mismatched, for another name, or about to expire. It reports
// whether it generated one.
func EnsureSelfSigned(certFile, keyFile, hostname string, now time.Time) (bool, error) {
	if info, err := Read(certFile); err == nil && CheckPair(certFile, keyFile) == nil &&
		slices.Contains(info.DNSNames, hostname) && now.Add(RenewBefore).Before(info.NotAfter) {
		return false, nil
	}
	certPEM, keyPEM, err := SelfSigned(hostname, now)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		return false, err
	}
	// Key first: a reader that sees the new certificate must find its key.
	// The key is 0600 from its first byte (atomicfile never widens a
	// temporary file before its content is complete).
	if err := atomicfile.Write(keyFile, keyPEM, 0o600); err != nil {
		return false, fmt.Errorf("private key: %w", err)
	}
	if err := atomicfile.Write(certFile, certPEM, 0o644); err != nil {
		return false, fmt.Errorf("certificate: %w", err)
	}
	return true, nil
}

// SelfSigned returns a PEM certificate and key (ECDSA P-256: fast to make,
// accepted by Postfix, Dovecot and every current client) for hostname.
func SelfSigned(hostname string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"quietmx self-signed"}},
		DNSNames:              []string{hostname},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(SelfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // so clients can pin it as its own root
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	return certPEM, keyPEM, nil
}

// DaysLeft returns whole days until the certificate expires (negative once
// expired).
func DaysLeft(info Info, now time.Time) int {
	return int(info.NotAfter.Sub(now) / (24 * time.Hour))
}
