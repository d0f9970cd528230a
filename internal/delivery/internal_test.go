package delivery

import (
	"errors"
	"testing"
)

// failAll is what a panic inside Run becomes: every recipient deferred,
// those already handled keeping their record.
func TestFailAll(t *testing.T) {
	req := Request{QueueID: "Q", Sender: "s@x", Recipients: []string{"a@x", "b@x", "c@x"}}
	partial := Result{Outcome: Delivered, Records: []Record{{Recipient: "a@x", Outcome: Delivered, Actions: []ActionLog{{Action: "maildir:/m", Result: "ok"}}}}}
	got := failAll(partial, req, errors.New("panic: boom"))
	if got.Outcome != Deferred || len(got.Records) != 3 {
		t.Fatalf("%+v", got)
	}
	for i, r := range got.Records {
		if r.Outcome != Deferred || r.Error != "panic: boom" || r.Recipient != req.Recipients[i] {
			t.Errorf("record %d = %+v", i, r)
		}
	}
	if none := failAll(Result{}, Request{}, errors.New("x")); len(none.Records) != 1 || none.Outcome != Deferred {
		t.Errorf("no recipients: %+v", none)
	}
}
