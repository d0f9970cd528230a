//go:build e2e

// Command smarthost is the e2e suite's test smarthost (TestForward): a
// small SMTP server that, like a real submission host, offers STARTTLS
// (a throw-away self-signed certificate), requires AUTH PLAIN over TLS,
// and records every accepted message as a JSON file in -dir, which the
// test reads with docker exec.
//
// Its behaviour is switched at run time through the file DIR/mode:
//
//	(absent), accept   accept every message
//	451, 550, ...      answer RCPT TO with that code (4xx: try later, 5xx: reject)
//	down               stop listening (connection refused) until the mode changes
//
// Every SMTP event is also appended to DIR/events.log, one line each.
//
// The suite builds it as a static binary (CGO_ENABLED=0) and runs it in a
// container from the appliance image with the binary bind-mounted: no
// registry is needed.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

var (
	listen   = flag.String("listen", ":587", "address to listen on")
	user     = flag.String("user", "relay-user", "the only SMTP AUTH user")
	pass     = flag.String("pass", "relay-pass", "its password")
	dir      = flag.String("dir", "/tmp/smarthost", "where messages, events and the mode file live")
	hostname = flag.String("hostname", "smarthost.relay.test", "name in the greeting and certificate")
)

// Record is one accepted message.
type Record struct {
	AuthUser string    `json:"auth_user"`
	TLS      bool      `json:"tls"`
	From     string    `json:"from"`
	Rcpts    []string  `json:"rcpts"`
	Data     []byte    `json:"data"`
	At       time.Time `json:"at"`
}

var (
	seq    atomic.Int64
	evMu   sync.Mutex
	events *os.File
)

func event(format string, args ...any) {
	line := fmt.Sprintf("%s %s\n", time.Now().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
	evMu.Lock()
	defer evMu.Unlock()
	events.WriteString(line)
	os.Stdout.WriteString("smarthost: " + line)
}

func mode() string {
	b, err := os.ReadFile(filepath.Join(*dir, "mode"))
	if err != nil {
		return "accept"
	}
	return strings.TrimSpace(string(b))
}

type session struct {
	conn  *smtp.Conn
	auth  string
	from  string
	rcpts []string
}

func (s *session) isTLS() bool {
	_, ok := s.conn.TLSConnectionState()
	return ok
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != *user || password != *pass {
			event("AUTH failed user=%q", username)
			return errors.New("invalid credentials")
		}
		s.auth = username
		event("AUTH ok user=%q tls=%v", username, s.isTLS())
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.auth == "" {
		event("MAIL FROM:<%s> refused: no AUTH", from)
		return smtp.ErrAuthRequired
	}
	s.from = from
	event("MAIL FROM:<%s>", from)
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.auth == "" {
		return smtp.ErrAuthRequired
	}
	if m := mode(); m != "accept" && m != "down" {
		code, err := strconv.Atoi(m)
		if err == nil && code >= 400 && code < 600 {
			event("RCPT TO:<%s> from=<%s> answered %d", to, s.from, code)
			enh := smtp.EnhancedCode{code / 100, 7, 1}
			return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: "smarthost test mode " + m}
		}
	}
	s.rcpts = append(s.rcpts, to)
	event("RCPT TO:<%s>", to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	rec := Record{AuthUser: s.auth, TLS: s.isTLS(), From: s.from, Rcpts: s.rcpts, Data: data, At: time.Now()}
	b, _ := json.Marshal(rec)
	n := seq.Add(1)
	// Time first: names stay unique and ordered across restarts.
	name := filepath.Join(*dir, fmt.Sprintf("msg-%d-%04d.json", time.Now().UnixNano(), n))
	if err := os.WriteFile(name+".tmp", b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		return err
	}
	event("DATA accepted from=<%s> rcpts=%v bytes=%d file=%s", s.from, s.rcpts, len(data), filepath.Base(name))
	return nil
}

func (s *session) Reset()        { s.from, s.rcpts = "", nil }
func (s *session) Logout() error { return nil }

func selfSigned(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func main() {
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	var err error
	events, err = os.OpenFile(filepath.Join(*dir, "events.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := selfSigned(*hostname)
	if err != nil {
		log.Fatal(err)
	}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{conn: c}, nil })
	srv := smtp.NewServer(be)
	srv.Domain = *hostname
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.MaxMessageBytes = 64 << 20

	// Listen while the mode is not "down"; close the listener (connection
	// refused) while it is.
	for {
		for mode() == "down" {
			time.Sleep(100 * time.Millisecond)
		}
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			log.Printf("listen: %v", err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		event("listening on %s", *listen)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.Serve(ln)
		}()
		for mode() != "down" {
			time.Sleep(100 * time.Millisecond)
		}
		ln.Close()
		<-done
		event("down: listener closed")
	}
}
