package spec

import (
	"fmt"
	"slices"

	"quietmx/internal/yamlconf"
)

// Delivery modes: how Postfix hands mail to the agent. Refusal at RCPT
// time (the rules' reject) works the same in both.
const (
	DeliveryLMTP = "lmtp" // the resident agent, over LMTP (the default)
	DeliveryPipe = "pipe" // one agent process per recipient (pipe(8)), as AltPostLocal
)

// deliveryModes are delivery's values, the default first.
var deliveryModes = []string{DeliveryLMTP, DeliveryPipe}

func (l *loader) validateDelivery() {
	d := &l.s.Delivery
	switch {
	case l.failed("delivery"):
	case !l.has("delivery"):
		*d = DeliveryLMTP
	case !slices.Contains(deliveryModes, *d):
		hint := ""
		if s := yamlconf.Suggest(*d, deliveryModes); s != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", s)
		}
		l.problem("delivery", "unknown delivery %q (want lmtp or pipe)%s", *d, hint)
	}
}
