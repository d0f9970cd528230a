package supervisor

import (
	"fmt"
	"runtime/debug"
)

// guard runs f, the body of one of the supervisor's own goroutines (the
// reaper, the log relay). Without them the appliance only looks alive:
// exited children would never be noticed, delivery lines never logged. So
// a panic is not swallowed: it is reported to fatal with its stack, and
// the supervisor stops the services and exits non-zero, for the
// container's restart policy to bring it back whole.
func guard(name string, fatal func(error), f func()) {
	defer func() {
		if r := recover(); r != nil {
			fatal(fmt.Errorf("%s panicked: %v\n%s", name, r, debug.Stack()))
		}
	}()
	f()
}
