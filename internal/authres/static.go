package authres

import (
	"context"
	"net"
	"strings"
)

// StaticResolver answers from fixed records, for tests and benchmarks:
// names are matched case-insensitively without the trailing dot; a name
// with no record is NXDOMAIN; Down makes every question time out at once.
type StaticResolver struct {
	TXT  map[string][]string
	IP   map[string][]net.IP
	Down bool
}

func (r *StaticResolver) fail(name string) error {
	if r.Down {
		return &net.DNSError{Err: "i/o timeout", Name: name, IsTimeout: true, IsTemporary: true}
	}
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func key(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// LookupTXT implements Resolver.
func (r *StaticResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := r.TXT[key(name)]; ok && !r.Down {
		return v, nil
	}
	return nil, r.fail(name)
}

// LookupIPAddr implements Resolver.
func (r *StaticResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	ips, ok := r.IP[key(host)]
	if !ok || r.Down {
		return nil, r.fail(host)
	}
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: ip}
	}
	return out, nil
}

// LookupMX implements Resolver: no MX records.
func (r *StaticResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return nil, r.fail(name)
}

// LookupAddr implements Resolver: no PTR records.
func (r *StaticResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	return nil, r.fail(addr)
}
