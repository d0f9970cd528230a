// Command dnsserver is the e2e suite's DNS: a small authoritative server
// for the test domains' SPF, DKIM and DMARC records, so that the
// appliance's sender checks run against real DNS over the network.
//
// It serves the zones of one master file (RFC 1035 syntax; a zone is
// every name at or under an SOA record's owner) over UDP and TCP, with the
// AA bit, NXDOMAIN and NODATA answers carrying the SOA, and REFUSED for
// names outside its zones. A long answer (an RSA key) is truncated over
// UDP so that the resolver retries over TCP, as with a real server.
//
// The zone file is read again when it changes (a test publishes a key
// while the server runs). The behaviour is switched at run time through
// the file DIR/mode:
//
//	(absent), serve   answer from the zones
//	servfail          answer every question with SERVFAIL
//	drop              answer nothing (the resolver times out)
//
// Every question is logged on stdout, one line each; "dnsserver: ready"
// says both listeners are up.
//
// The suite builds it as a static binary (CGO_ENABLED=0) and runs it in a
// container of the appliance image with the binary bind-mounted, as it
// does e2e/smarthost: no registry is needed.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

func main() {
	listen := flag.String("listen", ":53", "address for UDP and TCP")
	zoneFile := flag.String("zone", "/dnsserver/zone", "the zone master file")
	dir := flag.String("dir", "/tmp/dnsserver", "where the mode file lives")
	flag.Parse()
	log.SetFlags(0)
	srv := &server{zoneFile: *zoneFile, modeFile: filepath.Join(*dir, "mode"), log: log.Default()}
	if err := srv.load(); err != nil {
		log.Fatalf("dnsserver: %v", err)
	}
	udp, tcp, err := srv.listen(*listen)
	if err != nil {
		log.Fatalf("dnsserver: %v", err)
	}
	log.Printf("dnsserver: ready on %s (udp, tcp), zones %s", *listen, strings.Join(srv.zoneNames(), " "))
	errc := make(chan error, 2)
	go func() { errc <- udp.ActivateAndServe() }()
	go func() { errc <- tcp.ActivateAndServe() }()
	log.Fatalf("dnsserver: %v", <-errc)
}

// server answers from one zone file.
type server struct {
	zoneFile, modeFile string
	log                *log.Logger

	mu      sync.Mutex
	modTime time.Time
	zones   []string                       // SOA owners, canonical (lowercase, trailing dot)
	soa     map[string]dns.RR              // zone → its SOA
	records map[string]map[uint16][]dns.RR // owner → type → records
}

// listen opens UDP and TCP on addr (port 0: one free port for both) and
// returns servers ready for ActivateAndServe.
func (s *server) listen(addr string) (*dns.Server, *dns.Server, error) {
	for range 10 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			if _, port, _ := net.SplitHostPort(addr); port == "0" {
				continue // the UDP port was taken for TCP: try another
			}
			return nil, nil, err
		}
		return &dns.Server{PacketConn: pc, Handler: s}, &dns.Server{Listener: ln, Handler: s}, nil
	}
	return nil, nil, fmt.Errorf("no free port for both UDP and TCP on %s", addr)
}

// load reads the zone file when it changed since the last read. A file
// that does not parse keeps the zones served before (and says why).
func (s *server) load() error {
	st, err := os.Stat(s.zoneFile)
	if err != nil {
		return fmt.Errorf("zone file: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.ModTime().Equal(s.modTime) && s.records != nil {
		return nil
	}
	f, err := os.Open(s.zoneFile)
	if err != nil {
		return fmt.Errorf("zone file: %w", err)
	}
	defer f.Close()
	records := map[string]map[uint16][]dns.RR{}
	soa := map[string]dns.RR{}
	zp := dns.NewZoneParser(f, ".", s.zoneFile)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		owner := dns.CanonicalName(h.Name)
		if records[owner] == nil {
			records[owner] = map[uint16][]dns.RR{}
		}
		records[owner][h.Rrtype] = append(records[owner][h.Rrtype], rr)
		if h.Rrtype == dns.TypeSOA {
			soa[owner] = rr
		}
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("zone file: %w", err)
	}
	if len(soa) == 0 {
		return fmt.Errorf("zone file %s has no SOA record: no zone to serve", s.zoneFile)
	}
	s.records, s.soa, s.modTime = records, soa, st.ModTime()
	s.zones = s.zones[:0]
	for z := range soa {
		s.zones = append(s.zones, z)
	}
	return nil
}

func (s *server) zoneNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.zones...)
}

func (s *server) mode() string {
	b, err := os.ReadFile(s.modeFile)
	if err != nil {
		return "serve"
	}
	return strings.TrimSpace(string(b))
}

// ServeDNS implements dns.Handler.
func (s *server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	mode := s.mode()
	s.log.Printf("dnsserver: %s %s %s from %s (%s)", w.RemoteAddr().Network(), dns.TypeToString[q.Qtype], q.Name, w.RemoteAddr(), mode)
	if mode == "drop" {
		return
	}
	if err := s.load(); err != nil {
		s.log.Printf("dnsserver: %v; serving the zones read before", err)
	}
	m := s.answer(req)
	if mode == "servfail" {
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = int(opt.UDPSize())
		m.SetEdns0(opt.UDPSize(), false)
	}
	if w.RemoteAddr().Network() == "tcp" {
		size = dns.MaxMsgSize
	}
	m.Truncate(size)
	if err := w.WriteMsg(m); err != nil {
		s.log.Printf("dnsserver: write: %v", err)
	}
}

// answer builds the authoritative reply to req's one question.
func (s *server) answer(req *dns.Msg) *dns.Msg {
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	m := new(dns.Msg)
	m.SetReply(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	zone := ""
	for _, z := range s.zones {
		if dns.IsSubDomain(z, name) && len(z) > len(zone) {
			zone = z
		}
	}
	if zone == "" {
		m.Rcode = dns.RcodeRefused
		return m
	}
	m.Authoritative = true
	byType, exists := s.records[name]
	if !exists && s.hasBelow(name) {
		exists = true // an empty non-terminal: NODATA, not NXDOMAIN
	}
	switch {
	case !exists:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa[zone]}
	case q.Qtype == dns.TypeANY:
		for _, rrs := range byType {
			m.Answer = append(m.Answer, rrs...)
		}
	case len(byType[q.Qtype]) > 0:
		m.Answer = append(m.Answer, byType[q.Qtype]...)
	case len(byType[dns.TypeCNAME]) > 0:
		m.Answer = append(m.Answer, byType[dns.TypeCNAME]...)
	default:
		m.Ns = []dns.RR{s.soa[zone]}
	}
	return m
}

// hasBelow reports whether some owner lies under name.
func (s *server) hasBelow(name string) bool {
	for owner := range s.records {
		if owner != name && dns.IsSubDomain(name, owner) {
			return true
		}
	}
	return false
}
