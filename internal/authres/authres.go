// Package authres judges who sent a message (SPF, DKIM, DMARC) and writes
// the verdict down as the one Authentication-Results header (RFC 8601) the
// appliance adds to every message it accepts.
//
// CONSENT
// SPF looks only at the SMTP dialogue and the envelope (client IP, HELO,
// MAIL FROM), so it always runs. DKIM and DMARC read the message's headers
// and body, so they run only where the owner switched them on (Methods);
// the header lists only the methods that ran.
//
// FAILURE
// A DNS failure is a result (temperror), never a reason to delay or refuse
// the message: Check always returns a Report.
package authres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	msgauth "github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// Header is the field name this package writes and reads.
const Header = "Authentication-Results"

// Value is one method's result: pass, fail, softfail, neutral, none,
// temperror, permerror (RFC 8601 section 2.7); "" when it did not run.
type Value = msgauth.ResultValue

// The results the checks produce.
const (
	Pass      Value = msgauth.ResultPass
	Fail      Value = msgauth.ResultFail
	SoftFail  Value = msgauth.ResultSoftFail
	Neutral   Value = msgauth.ResultNeutral
	None      Value = msgauth.ResultNone
	TempError Value = msgauth.ResultTempError
	PermError Value = msgauth.ResultPermError
)

// Resolver answers the DNS questions the checks ask. *net.Resolver is one;
// tests and the e2e suite pass their own. A temporary failure must be a
// net.Error whose Temporary() is true (as net.DNSError's is for a timeout
// or SERVFAIL), and "no such name" a *net.DNSError with IsNotFound: the
// libraries classify errors by those types.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Methods are the checks that read the message itself; SPF always runs.
// DMARC needs DKIM's results, so DMARC on means DKIM runs too.
type Methods struct {
	DKIM  bool `json:"dkim"`
	DMARC bool `json:"dmarc"`
}

// Union is the methods either m or o asks for: with several recipients a
// method runs when any of them wants it.
func (m Methods) Union(o Methods) Methods {
	return Methods{DKIM: m.DKIM || o.DKIM, DMARC: m.DMARC || o.DMARC}
}

// Envelope is what the SMTP dialogue told about the message.
type Envelope struct {
	ClientIP net.IP // nil when the message did not come over the network
	Helo     string
	MailFrom string // without angle brackets; "" is the null sender
}

// Verdict is the outcome of the checks, as written in the header.
type Verdict struct {
	SPF   Value `json:"spf"`
	DKIM  Value `json:"dkim,omitempty"`  // pass when any signature passed; "" when not evaluated
	DMARC Value `json:"dmarc,omitempty"` // "" when not evaluated
	// Policy is what the From domain asks of failing mail (none,
	// quarantine, reject; the sp= policy for a subdomain); set whenever a
	// DMARC record was found.
	Policy dmarc.Policy `json:"policy,omitempty"`
	From   string       `json:"from,omitempty"` // the From header's domain DMARC judged
}

// Report is what Check found: the verdict and the results in the order the
// header lists them.
type Report struct {
	Verdict Verdict
	results []msgauth.Result
}

// Header returns the header field's value for hostname, the authserv-id:
// "mx.example.org; spf=pass smtp.mailfrom=a@b.example; dkim=...".
func (r Report) Header(hostname string) string {
	var b strings.Builder
	b.WriteString(hostname)
	for _, res := range r.results {
		// One result at a time: Format leaves a space after a result
		// without properties ("dkim=none ;").
		b.WriteString("; ")
		b.WriteString(strings.TrimSpace(strings.TrimPrefix(msgauth.Format("", []msgauth.Result{res}), "; ")))
	}
	return b.String()
}

// Checker runs the checks.
type Checker struct {
	Resolver Resolver      // nil: net.DefaultResolver
	Timeout  time.Duration // for all DNS work on one message; 0: DefaultTimeout
}

// DefaultTimeout bounds the DNS work for one message: past it the methods
// still waiting say temperror and the message goes on.
const DefaultTimeout = 10 * time.Second

// maxSignatures bounds the DKIM signatures verified per message (each
// costs a DNS lookup and an RSA operation).
const maxSignatures = 5

// Check judges the message msg (header and body, CRLF line ends) that came
// with env, running SPF and the methods in m.
func (c Checker) Check(ctx context.Context, env Envelope, msg []byte, m Methods) Report {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := c.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	res = absolute{res}
	var r Report
	spfRes, spfDomain := checkSPF(ctx, res, env)
	r.Verdict.SPF = spfRes.Value
	r.results = append(r.results, spfRes)
	if !m.DKIM && !m.DMARC {
		return r
	}
	sigs := checkDKIM(ctx, res, msg)
	r.Verdict.DKIM = bestDKIM(sigs)
	for _, s := range sigs {
		r.results = append(r.results, s)
	}
	if len(sigs) == 0 {
		r.results = append(r.results, &msgauth.DKIMResult{Value: None})
	}
	if m.DMARC {
		d := checkDMARC(ctx, res, msg, spfRes.Value, spfDomain, sigs)
		r.Verdict.DMARC, r.Verdict.Policy, r.Verdict.From = d.value, d.policy, d.from
		r.results = append(r.results, d.result())
	}
	return r
}

// absolute asks every name as a fully qualified one (a trailing dot):
// the names the checks look up are whole domain names, and a resolver
// that tries the system's search domains after "no such name"
// (_dmarc.example.com.corp.example) would report that second name's
// answer instead, a refusal turning "no DMARC record" into permerror.
type absolute struct{ Resolver }

func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

func (a absolute) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return a.Resolver.LookupTXT(ctx, fqdn(name))
}

func (a absolute) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return a.Resolver.LookupMX(ctx, fqdn(name))
}

func (a absolute) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if net.ParseIP(host) != nil {
		return a.Resolver.LookupIPAddr(ctx, host)
	}
	return a.Resolver.LookupIPAddr(ctx, fqdn(host))
}

// checkSPF evaluates the MAIL FROM identity, or postmaster@HELO for the
// null sender (RFC 7208 section 2.4), and returns the domain it judged.
func checkSPF(ctx context.Context, res Resolver, env Envelope) (*msgauth.SPFResult, string) {
	out := &msgauth.SPFResult{Value: None}
	sender := env.MailFrom
	if sender == "" {
		out.Helo = env.Helo
		sender = "postmaster@" + env.Helo
	} else {
		out.From = sender
	}
	if env.ClientIP == nil {
		out.Reason = "no client IP (not received over SMTP)"
		return out, domainOf(sender)
	}
	v, err := spf.CheckHostWithSender(env.ClientIP, env.Helo, sender,
		spf.WithResolver(res), spf.WithContext(ctx))
	out.Value = Value(v)
	if v == spf.TempError && err != nil {
		out.Reason = "DNS: " + shortErr(err)
	}
	return out, domainOf(sender)
}

// checkDKIM verifies every signature (up to maxSignatures).
func checkDKIM(ctx context.Context, res Resolver, msg []byte) []*msgauth.DKIMResult {
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return res.LookupTXT(ctx, name) },
		MaxVerifications: maxSignatures,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// The message could not be read as a message at all.
		return []*msgauth.DKIMResult{{Value: PermError, Reason: shortErr(err)}}
	}
	var out []*msgauth.DKIMResult
	for _, v := range vs {
		r := &msgauth.DKIMResult{Value: Pass, Domain: v.Domain, Identifier: v.Identifier}
		switch {
		case v.Err == nil:
		case dkim.IsTempFail(v.Err):
			r.Value, r.Reason = TempError, shortErr(v.Err)
		case dkim.IsPermFail(v.Err):
			r.Value, r.Reason = PermError, shortErr(v.Err)
		default:
			r.Value, r.Reason = Fail, shortErr(v.Err)
		}
		out = append(out, r)
	}
	return out
}

// bestDKIM sums up the signatures: pass if any passed, else the first
// signature's result, none when unsigned.
func bestDKIM(sigs []*msgauth.DKIMResult) Value {
	if len(sigs) == 0 {
		return None
	}
	for _, s := range sigs {
		if s.Value == Pass {
			return Pass
		}
	}
	return sigs[0].Value
}

type dmarcOutcome struct {
	value  Value
	policy dmarc.Policy
	from   string
	reason string
}

// result writes the policy next to the result (policy.dmarc, a local
// policy property, RFC 8601 section 2.3) so that delivery, the owner's
// filters and Verdict can act on "fail under p=reject" alone.
func (d dmarcOutcome) result() msgauth.Result {
	params := map[string]string{"header.from": d.from, "reason": d.reason}
	if d.policy != "" {
		params["policy.dmarc"] = string(d.policy)
	}
	return &msgauth.GenericResult{Method: "dmarc", Value: d.value, Params: params}
}

// checkDMARC applies the From domain's DMARC record (RFC 7489) to the SPF
// and DKIM results: pass when either passed for a domain aligned with the
// From domain.
func checkDMARC(ctx context.Context, res Resolver, msg []byte, spfValue Value, spfDomain string, sigs []*msgauth.DKIMResult) dmarcOutcome {
	from, err := fromDomain(msg)
	if err != nil {
		return dmarcOutcome{value: PermError, reason: err.Error()}
	}
	out := dmarcOutcome{from: from}
	rec, temp, err := lookupDMARC(ctx, res, from)
	switch {
	case temp:
		out.value, out.reason = TempError, "DNS: "+shortErr(err)
		return out
	case errors.Is(err, dmarc.ErrNoPolicy):
		out.value = None
		return out
	case err != nil:
		out.value, out.reason = PermError, shortErr(err)
		return out
	}
	out.policy = rec.Policy
	if rec.SubdomainPolicy != "" && rec.orgDomain != from {
		out.policy = rec.SubdomainPolicy
	}
	if spfValue == Pass && aligned(spfDomain, from, rec.SPFAlignment) {
		out.value = Pass
		return out
	}
	for _, s := range sigs {
		if s.Value == Pass && aligned(s.Domain, from, rec.DKIMAlignment) {
			out.value = Pass
			return out
		}
	}
	out.value = Fail
	return out
}

type dmarcRecord struct {
	*dmarc.Record
	orgDomain string // the domain whose record applied
}

// lookupDMARC finds the record for domain, else for its organizational
// domain (RFC 7489 section 6.6.3). temp reports a DNS failure.
func lookupDMARC(ctx context.Context, res Resolver, domain string) (rec dmarcRecord, temp bool, err error) {
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(ctx, name) }}
	r, err := dmarc.LookupWithOptions(domain, opts)
	if err == nil {
		return dmarcRecord{r, domain}, false, nil
	}
	if dmarc.IsTempFail(err) {
		return rec, true, err
	}
	org := orgDomain(domain)
	if !errors.Is(err, dmarc.ErrNoPolicy) || org == domain {
		return rec, false, err
	}
	r, err = dmarc.LookupWithOptions(org, opts)
	if err != nil {
		return rec, dmarc.IsTempFail(err), err
	}
	return dmarcRecord{r, org}, false, nil
}

// aligned reports DMARC identifier alignment: the same domain (strict) or
// the same organizational domain (relaxed, the default).
func aligned(domain, from string, mode dmarc.AlignmentMode) bool {
	domain, from = strings.ToLower(strings.TrimSuffix(domain, ".")), strings.ToLower(from)
	if domain == "" {
		return false
	}
	if domain == from {
		return true
	}
	return mode != dmarc.AlignmentStrict && orgDomain(domain) == orgDomain(from)
}

// orgDomain is the registered domain under the public suffix list
// ("mail.example.co.uk" → "example.co.uk"); the domain itself when it has
// none.
func orgDomain(d string) string {
	if org, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return org
	}
	return d
}

// fromDomain is the one domain of the From header (RFC 7489 section 6.6.1):
// a message without From, or with addresses in several domains, cannot be
// judged.
func fromDomain(msg []byte) (string, error) {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return "", fmt.Errorf("unreadable header")
	}
	froms := m.Header["From"]
	if len(froms) != 1 {
		return "", fmt.Errorf("%d From fields", len(froms))
	}
	list, err := mail.ParseAddressList(froms[0])
	if err != nil || len(list) == 0 {
		return "", fmt.Errorf("unparsable From")
	}
	domain := ""
	for _, a := range list {
		d := strings.ToLower(domainOf(a.Address))
		if d == "" || domain != "" && d != domain {
			return "", fmt.Errorf("From has several domains")
		}
		domain = d
	}
	return domain, nil
}

// domainOf is the part after the last @ ("" when there is none).
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// shortErr keeps reasons on one short line: the header is read by people.
func shortErr(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}
