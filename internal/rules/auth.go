package rules

import (
	"go.yaml.in/yaml/v3"

	"quietmx/internal/authres"
)

// parseDMARCFail reads dmarc_fail: what a DMARC failure does for an
// address (deliver, junk or refuse), keyed like aliases:, with a default
// key for every other address. Unset addresses are delivered as usual.
func (p *parser) parseDMARCFail(set *Set, v *yaml.Node) {
	set.DMARCFail, _ = authres.ParseDMARCFail(p.Doc, v, "dmarc_fail")
}

// DMARCFailAt returns the disposition stored under key exactly ("" when
// none); package route walks the aliases' lookup order over it.
func (s *Set) DMARCFailAt(key string) authres.Disposition { return s.DMARCFail[key] }
