package route

import (
	"quietmx/internal/authres"
	"quietmx/internal/rules"
)

// DMARCFail returns what a DMARC failure does for recipient under the rule
// file's dmarc_fail: (after rematch, keys in the aliases' lookup order,
// then default) and the key that decided it; Deliver and "" when no key
// matches.
func DMARCFail(set *rules.Set, recipient string) (authres.Disposition, string) {
	if len(set.DMARCFail) == 0 {
		return authres.Deliver, ""
	}
	addr := recipient
	for _, rm := range set.Rematch {
		if rm.Pattern.MatchString(recipient) {
			addr = rm.Target
			break
		}
	}
	for key := range keys(set.Extension, addr) {
		if d := set.DMARCFailAt(key); d != "" {
			return d, key
		}
	}
	if d := set.DMARCFailAt("default"); d != "" {
		return d, "default"
	}
	return authres.Deliver, ""
}
