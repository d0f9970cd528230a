package authres

import (
	"bufio"
	"bytes"
	"fmt"
	"net/textproto"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
)

// Reading Authentication-Results fields is done here rather than with
// go-msgauth's authres.Parse: that one splits on ";" and spaces without
// regard to comments or quoted strings (its own TODO), and a forger could
// hide our host name from it ("(x) mx.example.org; dkim=pass"). Whether a
// field claims to be ours decides whether it is removed, so the reading
// follows RFC 8601's grammar: comments (nested) and whitespace are skipped,
// a quoted string is a value.

// Method is one "method=result" entry of an Authentication-Results field
// with its properties ("header.from" → "example.com"); names are lowercase.
type Method struct {
	Name   string
	Result Value
	Props  map[string]string
}

// ParseField reads an Authentication-Results field value: the authserv-id
// (lowercase, "" when there is none) and the results. It never fails:
// what cannot be read is left out.
func ParseField(value string) (servID string, methods []Method) {
	toks := lex(value)
	i := 0
	if i < len(toks) && toks[i].kind == tokWord {
		servID = strings.ToLower(toks[i].text)
		i++
	}
	// Everything up to the first ";" after the authserv-id is its version.
	for i < len(toks) && toks[i].kind != tokSemi {
		i++
	}
	for i < len(toks) {
		i++ // the ";"
		j := i
		for j < len(toks) && toks[j].kind != tokSemi {
			j++
		}
		if m, ok := parseResinfo(toks[i:j]); ok {
			methods = append(methods, m)
		}
		i = j
	}
	return servID, methods
}

// parseResinfo reads "method[/version]=result key=value ...".
func parseResinfo(toks []token) (Method, bool) {
	if len(toks) < 3 || toks[0].kind != tokWord || toks[1].kind != tokEq || toks[2].kind != tokWord || toks[0].text == "" || toks[2].text == "" {
		return Method{}, false
	}
	name, _, _ := strings.Cut(strings.ToLower(toks[0].text), "/")
	if name == "" {
		return Method{}, false
	}
	m := Method{Name: name, Result: Value(strings.ToLower(toks[2].text)), Props: map[string]string{}}
	for k := 3; k+2 < len(toks); {
		if toks[k].kind == tokWord && toks[k+1].kind == tokEq && toks[k+2].kind == tokWord {
			m.Props[strings.ToLower(toks[k].text)] = toks[k+2].text
			k += 3
			continue
		}
		k++
	}
	return m, true
}

type tokKind int

const (
	tokWord tokKind = iota
	tokEq
	tokSemi
)

type token struct {
	kind tokKind
	text string
}

// lex splits a field value into words (tokens and quoted strings), "="
// and ";", dropping whitespace and comments.
func lex(s string) []token {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			depth := 0
			for ; i < len(s); i++ {
				if s[i] == '\\' {
					i++
					continue
				}
				if s[i] == '(' {
					depth++
				} else if s[i] == ')' {
					depth--
					if depth == 0 {
						i++
						break
					}
				}
			}
		case c == '"':
			var b strings.Builder
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			i++
			out = append(out, token{tokWord, b.String()})
		case c == '=':
			out = append(out, token{tokEq, "="})
			i++
		case c == ';':
			out = append(out, token{tokSemi, ";"})
			i++
		case c == ')':
			i++ // a stray one: nothing to close
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n()\";=", rune(s[j])) {
				j++
			}
			out = append(out, token{tokWord, s[i:j]})
			i = j
		}
	}
	return out
}

// Ours reports whether an Authentication-Results field value claims to come
// from hostname (case-insensitive; a trailing dot ignored). Before the
// appliance adds its own, every incoming field that is Ours is a forgery
// and is removed.
func Ours(value, hostname string) bool {
	id, _ := ParseField(value)
	id = strings.TrimSuffix(id, ".")
	return id != "" && id == strings.ToLower(strings.TrimSuffix(hostname, "."))
}

// ReadVerdict finds the appliance's own Authentication-Results field in
// msg (the first one that is Ours, from the top; the milter removed every
// older one) and returns the verdict written in it. ok is false when there
// is none: the message did not pass the checks (a local submission, or the
// milter was off), and nothing may be concluded.
func ReadVerdict(msg []byte, hostname string) (v Verdict, ok bool) {
	hdr, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg))).ReadMIMEHeader()
	if err != nil && len(hdr) == 0 {
		return v, false
	}
	for _, value := range hdr.Values(Header) {
		if Ours(value, hostname) {
			return FieldVerdict(value), true
		}
	}
	return v, false
}

// FieldVerdict is the verdict written in one Authentication-Results field
// value (the first result of each method counts for spf and dmarc; dkim
// passes when any signature passed).
func FieldVerdict(value string) Verdict {
	_, methods := ParseField(value)
	var v Verdict
	for _, m := range methods {
		switch m.Name {
		case "spf":
			if v.SPF == "" {
				v.SPF = m.Result
			}
		case "dkim":
			if v.DKIM == "" || m.Result == Pass {
				v.DKIM = m.Result
			}
		case "dmarc":
			if v.DMARC == "" {
				v.DMARC = m.Result
				v.Policy = dmarc.Policy(strings.ToLower(m.Props["policy.dmarc"]))
				v.From = m.Props["header.from"]
			}
		}
	}
	return v
}

// ParseVerdict reads a verdict given by hand, as `explain --auth` takes it:
// the results part of an Authentication-Results field, entries separated
// by ";" or ",": "dmarc=fail", "spf=pass, dmarc=fail policy.dmarc=quarantine".
// A DMARC fail without a policy is taken as p=reject, the strictest, so
// that explain shows every action the owner's settings can take.
func ParseVerdict(s string) (Verdict, error) {
	v := FieldVerdict("x; " + strings.ReplaceAll(s, ",", ";"))
	if v == (Verdict{}) {
		return v, fmt.Errorf("no result in %q (want e.g. dmarc=fail or spf=pass,dkim=pass)", s)
	}
	for _, r := range []struct {
		name string
		v    Value
	}{{"spf", v.SPF}, {"dkim", v.DKIM}, {"dmarc", v.DMARC}} {
		switch r.v {
		case "", Pass, Fail, SoftFail, Neutral, None, TempError, PermError:
		default:
			return v, fmt.Errorf("%s=%s: unknown result (want pass, fail, softfail, neutral, none, temperror or permerror)", r.name, r.v)
		}
	}
	switch v.Policy {
	case "":
		if v.DMARC == Fail {
			v.Policy = dmarc.PolicyReject
		}
	case dmarc.PolicyNone, dmarc.PolicyQuarantine, dmarc.PolicyReject:
	default:
		return v, fmt.Errorf("policy.dmarc=%s: unknown policy (want none, quarantine or reject)", v.Policy)
	}
	return v, nil
}
