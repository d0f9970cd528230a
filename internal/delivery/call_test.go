package delivery_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"quietmx/internal/delivery"
	"quietmx/internal/dump"
	"quietmx/internal/maillog"
)

func getenv(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestParseCall(t *testing.T) {
	def := delivery.Call{Config: delivery.Config{RulesPath: delivery.DefaultRules, Sendmail: "/usr/sbin/sendmail", Deadline: delivery.DefaultDeadline}, Log: delivery.DefaultLog, Args: []string{}}
	with := func(f func(c *delivery.Call)) delivery.Call {
		c := def
		f(&c)
		return c
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want delivery.Call
	}{
		{"postfix argv", []string{"-c", "/r.yaml", "-deadline", "300s", "-q", "4XyZ", "-f", "s@x", "--", "r@x"}, nil,
			with(func(c *delivery.Call) {
				c.RulesPath, c.QueueID, c.Sender, c.Args = "/r.yaml", "4XyZ", "s@x", []string{"r@x"}
			})},
		{"long names", []string{"-sender", "s@x", "-json", "a.json", "b.json"}, nil,
			with(func(c *delivery.Call) { c.Sender, c.JSON, c.Args = "s@x", true, []string{"a.json", "b.json"} })},
		{"env config", []string{"-f", "", "--", "r@x"}, map[string]string{"ALTPOSTLOCAL_CONFIG": "/env.yaml"},
			with(func(c *delivery.Call) { c.RulesPath, c.Args = "/env.yaml", []string{"r@x"} })},
		{"-c wins over env", []string{"-c", "/flag.yaml", "r@x"}, map[string]string{"ALTPOSTLOCAL_CONFIG": "/env.yaml"},
			with(func(c *delivery.Call) { c.RulesPath, c.Args = "/flag.yaml", []string{"r@x"} })},
		{"the rest", []string{"-log", "stderr", "-v", "-deadline", "5s", "-sendmail", "/sm", "-forward-sender", "fw@x", "r@x"}, nil,
			with(func(c *delivery.Call) {
				c.Log, c.Verbose, c.Deadline, c.Sendmail, c.ForwardSender, c.Args = "stderr", true, 5*time.Second, "/sm", "fw@x", []string{"r@x"}
			})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := delivery.ParseCall(tt.args, getenv(tt.env))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCall(%q) =\n %+v\nwant\n %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestBadCommandLineDefers(t *testing.T) {
	for _, args := range [][]string{
		{"-no-such-flag", "-f", "s@x", "--", "r@x"},
		{"-deadline", "soon", "--", "r@x"},
		{"-h"},
		{"-f"},
	} {
		c := delivery.ParseCall(args, getenv(nil))
		if c.Err == nil {
			t.Errorf("ParseCall(%q): no error", args)
			continue
		}
		res := c.Run(context.Background(), strings.NewReader(msg))
		if res.Outcome != delivery.Deferred || len(res.Records) == 0 || !strings.HasPrefix(res.Records[0].Error, "bad command line") {
			t.Errorf("%q: %v %+v, want deferred with the reason", args, res.Outcome, res.Records)
		}
	}
}

func TestCallRun(t *testing.T) {
	e := newEnv(t, "default: {type: maildir, value: DIR/box}\n")
	call := func(args ...string) delivery.Call {
		c := delivery.ParseCall(append([]string{"-c", e.path}, args...), getenv(nil))
		if c.Err != nil {
			t.Fatal(c.Err)
		}
		return c
	}
	t.Run("no recipient: dropped, exit 0, one record", func(t *testing.T) {
		res := call("-q", "Q1", "-f", "s@x", "--").Run(context.Background(), strings.NewReader(msg))
		if res.Outcome != delivery.Dropped || delivery.ExitCode(res.Outcome) != 0 || len(res.Records) != 1 || res.Records[0].QueueID != "Q1" || res.Records[0].Error == "" {
			t.Errorf("%+v", res)
		}
	})
	t.Run("unreadable message: deferred, a record per recipient", func(t *testing.T) {
		res := call("-f", "s@x", "--", "a@x", "b@x").Run(context.Background(), iotest.ErrReader(errors.New("broken pipe")))
		if res.Outcome != delivery.Deferred || len(res.Records) != 2 || res.Records[1].Recipient != "b@x" || !strings.Contains(res.Records[0].Error, "read message: broken pipe") {
			t.Errorf("%+v", res)
		}
	})
	t.Run("mbox From_ line is dropped", func(t *testing.T) {
		res := call("-f", "s@x", "--", "fromline@x").Run(context.Background(), strings.NewReader("From s@x  Mon Nov 30 05:43:26 2026\n"+msg))
		expectOutcome(t, res, delivery.Delivered)
		got, _ := os.ReadFile(res.Records[0].Actions[0].File)
		if want := "Return-Path: <s@x>\nDelivered-To: fromline@x\n" + msg; string(got) != want {
			t.Errorf("delivered %q, want %q", got, want)
		}
	})
	dumpFile := func(name string, d dump.Dump) string {
		data, err := dump.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	one := dumpFile("one.json", dump.Dump{Sender: "s@x", Recipients: []string{"d1@x"}, Mail: []byte("From s@x  Mon Nov 30 05:43:26 2026\n" + msg)})
	two := dumpFile("two.json", dump.Dump{Sender: "s@x", Recipients: []string{"d2@x", "d3@x"}, Mail: []byte(msg)})
	t.Run("dumps: one record per recipient, From_ line dropped", func(t *testing.T) {
		before := len(e.files("box/new"))
		res := call("-j", one, two).Run(context.Background(), nil)
		expectOutcome(t, res, delivery.Delivered)
		if len(res.Records) != 3 || len(e.files("box/new")) != before+3 {
			t.Fatalf("records %d, files %d", len(res.Records), len(e.files("box/new"))-before)
		}
		got, _ := os.ReadFile(res.Records[0].Actions[0].File)
		if bytes.Contains(got, []byte("From s@x ")) {
			t.Errorf("the From_ line of a dump was delivered: %q", got)
		}
	})
	t.Run("one unreadable dump: nothing delivered, deferred", func(t *testing.T) {
		before := len(e.files("box/new"))
		res := call("-j", one, filepath.Join(e.dir, "missing.json")).Run(context.Background(), nil)
		if res.Outcome != delivery.Deferred || !strings.Contains(res.Records[0].Error, "missing.json") || len(e.files("box/new")) != before {
			t.Errorf("%+v", res)
		}
	})
	t.Run("dump from stdin", func(t *testing.T) {
		data, _ := os.ReadFile(two)
		expectOutcome(t, call("-j").Run(context.Background(), bytes.NewReader(data)), delivery.Delivered)
	})
}

func TestLog(t *testing.T) {
	res := delivery.Result{Outcome: delivery.Rescued, Records: []delivery.Record{
		{QueueID: "Q", Sender: "s@x", OrigRecipient: "a+b@x", Recipient: "a+b@x", Key: "a@x",
			Actions: []delivery.ActionLog{{Action: "maildir:/m", Result: "ok", File: "/m/new/1.M2P3Q1R4.host"}, {Action: "dump:/d", Result: "ok", File: "/d/1.json"}},
			Outcome: delivery.Delivered},
		{QueueID: "Q", Sender: "s@x", OrigRecipient: "c@x", Recipient: "c@x", Key: "c",
			Actions: []delivery.ActionLog{{Action: "pipe:/bin/false", Result: "failed: exit status 1"}, {Action: "maildir:/m", Result: "skipped"}},
			Outcome: delivery.Rescued, Error: "exit status 1", RescueFile: "/r/1.M2P3Q2R5.host"},
	}}
	lost := delivery.Result{Outcome: delivery.Lost, Records: []delivery.Record{{Sender: "s@x", OrigRecipient: "l@x", Recipient: "l@x", Outcome: delivery.Lost, Error: "route l@x: no key matched", Detail: "no rescue directory configured"}}}
	stale := delivery.Result{Outcome: delivery.Dropped, RulesStale: "bad YAML", Records: []delivery.Record{{Recipient: "x@x", OrigRecipient: "x@x", Key: "x", Outcome: delivery.Dropped}}}
	deferred := delivery.Result{Outcome: delivery.Deferred, Records: []delivery.Record{{Outcome: delivery.Deferred, Error: "bad command line"}}}
	path := filepath.Join(t.TempDir(), "agent.log")
	log, done := maillog.Open(path, nil)
	for _, r := range []delivery.Result{res, lost, stale, deferred} {
		delivery.Log(log, r, 12*time.Millisecond)
	}
	done()
	data, _ := os.ReadFile(path)
	want := `altpostlocal: level=INFO msg=delivery queue_id=Q sender=s@x recipient=a+b@x orig_recipient=a+b@x key=a@x actions="maildir:/m=ok(/m/new/1.M2P3Q1R4.host); dump:/d=ok(/d/1.json)" outcome=delivered exit=0 duration_ms=12
altpostlocal: level=WARN msg=delivery queue_id=Q sender=s@x recipient=c@x orig_recipient=c@x key=c actions="pipe:/bin/false=failed: exit status 1; maildir:/m=skipped" outcome=rescued exit=0 duration_ms=12 error="exit status 1" rescue_file=/r/1.M2P3Q2R5.host
altpostlocal: level=ERROR msg=delivery queue_id="" sender=s@x recipient=l@x orig_recipient=l@x key="" actions="" outcome=lost exit=0 duration_ms=12 error="route l@x: no key matched" detail="no rescue directory configured"
altpostlocal: level=WARN msg=delivery queue_id="" sender="" recipient=x@x orig_recipient=x@x key=x actions="" outcome=dropped exit=0 duration_ms=12 rules_stale="using the last valid rule file: bad YAML"
altpostlocal: level=ERROR msg=delivery queue_id="" sender="" recipient="" orig_recipient="" key="" actions="" outcome=deferred exit=75 duration_ms=12 error="bad command line"
`
	if string(data) != want {
		t.Errorf("log =\n%s\nwant\n%s", data, want)
	}
}
