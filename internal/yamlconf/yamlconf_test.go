package yamlconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// decode parses src and fails the test on a syntax error.
func decode(t testing.TB, src string) (*Doc, *yaml.Node) {
	t.Helper()
	d := New("f.yaml")
	root, ok := d.Decode([]byte(src))
	if !ok {
		t.Fatalf("Decode(%q): %v", src, d.Diags)
	}
	return d, root
}

// flat renders a mapping's pairs as "k=v k=v", values resolved.
func flat(d *Doc, n *yaml.Node) (string, error) {
	kvs, err := d.Pairs(n, "")
	if err != nil {
		return "", err
	}
	var parts []string
	for _, kv := range kvs {
		v := d.Resolve(kv.Val)
		if v.Kind == yaml.MappingNode {
			s, err := flat(d, v)
			if err != nil {
				return "", err
			}
			parts = append(parts, kv.Key.Value+"={"+s+"}")
			continue
		}
		parts = append(parts, kv.Key.Value+"="+v.Value)
	}
	return strings.Join(parts, " "), nil
}

func TestPairsAliasesAndMerges(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"plain", "a: 1\nb: 2\n", "a=1 b=2"},
		{"alias value", "x: &x 1\ny: *x\n", "x=1 y=1"},
		{"alias of a mapping", "x: &x {a: 1}\ny: *x\n", "x={a=1} y={a=1}"},
		{"merge", "x: &x {a: 1, b: 2}\ny: {<<: *x, c: 3}\n", "x={a=1 b=2} y={c=3 a=1 b=2}"},
		{"explicit key wins, wherever << is", "x: &x {a: 1, b: 2}\ny: {b: 9, <<: *x}\nz: {<<: *x, b: 8}\n", "x={a=1 b=2} y={b=9 a=1} z={b=8 a=1}"},
		{"earlier merge source wins", "x: &x {a: 1}\nw: &w {a: 2, b: 2}\ny: {<<: [*x, *w]}\n", "x={a=1} w={a=2 b=2} y={a=1 b=2}"},
		{"two << keys, first wins", "x: &x {a: 1}\nw: &w {a: 2}\ny: {<<: *x, <<: *w}\n", "x={a=1} w={a=2} y={a=1}"},
		{"nested merge: the source's own keys win over its merges", "x: &x {a: 1}\nw: &w {<<: *x, a: 2}\ny: {<<: *w}\n", "x={a=1} w={a=2} y={a=2}"},
		{"quoted and plain keys differ", "\"1\": a\n1: b\n", "1=a 1=b"},
		{"alias key", "k: &k name\n*k : v\n", "k=name name=v"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, root := decode(t, tc.src)
			got, err := flat(d, root)
			if err != nil || got != tc.want {
				t.Errorf("got %q (%v), want %q", got, err, tc.want)
			}
			if len(d.Diags) != 0 {
				t.Errorf("unexpected diagnostics: %v", d.Diags)
			}
		})
	}
}

func TestPairsRefused(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"merge of a scalar", "y: {<<: 1}\n", "merge key << wants a mapping or a list of mappings"},
		{"merge of a list of scalars", "y: {<<: [1]}\n", "merge key << wants a mapping or a list of mappings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, root := decode(t, tc.src)
			_, err := flat(d, root)
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// bomb is ten levels of ten-way merges: 1e10 entries if expanded.
func bomb() string {
	var b strings.Builder
	b.WriteString("x-0: &a0 {k: v}\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "x-%d: &a%d {<<: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	b.WriteString("y: *a10\n")
	return b.String()
}

func TestBudget(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"merge bomb", bomb()},
		{"merge bomb, one mapping per level", strings.ReplaceAll(bomb(), "{<<: [", "{<<: [*a0, ")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, root := decode(t, tc.src)
			start := time.Now()
			var err error
			var walk func(n *yaml.Node)
			walk = func(n *yaml.Node) {
				n = d.Resolve(n)
				if n.Kind != yaml.MappingNode || err != nil {
					return
				}
				var kvs []Pair
				if kvs, err = d.Pairs(n, ""); err == nil {
					for _, kv := range kvs {
						walk(kv.Val)
					}
				}
			}
			walk(root)
			if !errors.Is(err, ErrBudget) {
				t.Errorf("err = %v, want ErrBudget", err)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("refusing the bomb took %v", time.Since(start))
			}
			// Once spent, the budget stays spent: no later walk succeeds.
			if _, err := d.Pairs(root, ""); !errors.Is(err, ErrBudget) {
				t.Errorf("after the bomb: %v", err)
			}
		})
	}
}

func TestDuplicateKeys(t *testing.T) {
	d, root := decode(t, "a: 1\nb:\n  c: 1\n  c: 2\na: 3\nx: &x {k: 1, k: 2}\ny: {<<: *x}\nz: {<<: *x}\n")
	got, err := flat(d, root)
	if err != nil || got != "a=3 b={c=2} x={k=2} y={k=2} z={k=2}" {
		t.Errorf("the last one must win: %q %v", got, err)
	}
	var msgs []string
	for _, dg := range d.Diags {
		msgs = append(msgs, dg.String())
	}
	want := []string{
		`f.yaml:5:1: warning: key "a" is defined more than once (first at line 1); the last one wins`,
		`f.yaml:4:3: warning: key "c" is defined more than once (first at line 3); the last one wins`,
		`f.yaml:6:14: warning: key "k" is defined more than once (first at line 6); the last one wins`,
	}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Errorf("diagnostics:\n%s\nwant (each once, even for a mapping merged twice):\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
	if d.Diags.HasErrors() {
		t.Errorf("duplicates are warnings")
	}
}

func TestBool(t *testing.T) {
	const want = "want true or false (also yes/no, on/off, unquoted), got "
	for _, tc := range []struct {
		src   string
		value bool
		got   string // "" = accepted
	}{
		{"true", true, ""}, {"True", true, ""}, {"TRUE", true, ""}, {"tRuE", true, ""},
		{"yes", true, ""}, {"Yes", true, ""}, {"YES", true, ""},
		{"on", true, ""}, {"On", true, ""}, {"ON", true, ""},
		{"false", false, ""}, {"False", false, ""}, {"FALSE", false, ""},
		{"no", false, ""}, {"No", false, ""}, {"NO", false, ""},
		{"off", false, ""}, {"Off", false, ""}, {"OFF", false, ""},
		{"", false, ""}, {"~", false, ""}, {"null", false, ""},
		{"!!bool yes", true, ""},
		{"*t", true, ""},
		{`"false"`, false, `"false" (a quoted string)`},
		{`"true"`, false, `"true" (a quoted string)`},
		{`'no'`, false, `"no" (a quoted string)`},
		{"0", false, "0 (a number)"},
		{"1", false, "1 (a number)"},
		{"0.0", false, "0.0 (a number)"},
		{"y", false, `"y"`},
		{"n", false, `"n"`},
		{"Y", false, `"Y"`},
		{"enabled", false, `"enabled"`},
		{"[true]", false, "a list"},
		{"{on: off}", false, "a mapping"},
		{"!!str yes", false, `"yes"`},
		{"|-\n  true", false, `"true"`},
	} {
		t.Run(tc.src, func(t *testing.T) {
			d, root := decode(t, "t: &t on\nv: "+tc.src+"\n")
			kvs, _ := d.Pairs(root, "")
			v, ok := d.Bool(kvs[1].Val, "v")
			if tc.got == "" {
				if !ok || v != tc.value || len(d.Diags) != 0 {
					t.Errorf("Bool = %v, %v (%v), want %v", v, ok, d.Diags, tc.value)
				}
				return
			}
			if ok || v || len(d.Diags) != 1 || d.Diags[0].String() != "f.yaml:2:4: v: "+want+tc.got {
				t.Errorf("Bool = %v, %v, %v; want the error %q at 2:4", v, ok, d.Diags, want+tc.got)
			}
		})
	}
}

// Syntax errors name the line the problem is on (yaml.v3 counts some from
// 0) and, where it can be told, the column.
func TestSyntaxErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"flow mapping left open on line 4", "a: 1\nb: 2\nc: 3\nd: {e: f\ng: h\n", "4:4: YAML syntax: did not find expected ',' or '}'"},
		{"flow mapping left open, nested", "a:\n  b: {c: d, e: {f: g}\n  h: i\n", "2:6: YAML syntax: did not find expected ',' or '}'"},
		{"flow mapping with a brace in quotes", "a: 1\nb: {c: \"{\", d: e\n", "2:4: YAML syntax: did not find expected ',' or '}'"},
		{"flow sequence left open on line 1", "a: [b, c\n", "1:4: YAML syntax: did not find expected ',' or ']'"},
		{"flow sequence left open on line 3", "a: 1\nb: 2\nc: [d\ne: f\n", "3:4: YAML syntax: did not find expected ',' or ']'"},
		{"mapping in a scalar", "a: 1\nb: c: d\n", "2:1: YAML syntax: mapping values are not allowed in this context"},
		{"bad indentation", "a: 1\nb:\n  c: 1\n d: 2\n", "4:2: YAML syntax: did not find expected key"},
		{"tab", "a:\n\t- x\n", "2:2: YAML syntax: found character that cannot start any token"},
		{"unterminated quote", "a: 1\nb: \"x\n", "2:1: YAML syntax: found unexpected end of stream"},
		{"unknown anchor", "a: 1\nb: [x, *nope]\n", "2:8: YAML syntax: unknown anchor 'nope' referenced"},
		{"undefined tag handle", "a: 1\nb: !x!y z\n", "2:1: YAML syntax: found undefined tag handle"},
		{"not UTF-8", "a: \xff\n", "1:1: YAML syntax: invalid leading UTF-8 octet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := New("f.yaml")
			root, ok := d.Decode([]byte(tc.src))
			if ok || root != nil || len(d.Diags) != 1 {
				t.Fatalf("Decode = %v, %v, %v; want one syntax error", root, ok, d.Diags)
			}
			if got := d.Diags[0].String(); got != "f.yaml:"+tc.want {
				t.Errorf("got  %q\nwant %q", got, "f.yaml:"+tc.want)
			}
		})
	}
}

func TestDecodeEmpty(t *testing.T) {
	for _, src := range []string{"", "\n", "# only a comment\n", "---\n", "~\n", "null\n"} {
		d := New("f.yaml")
		if root, ok := d.Decode([]byte(src)); !ok || root != nil || len(d.Diags) != 0 {
			t.Errorf("%q: %v %v %v; want an empty document", src, root, ok, d.Diags)
		}
	}
}

func TestSuggestAndUnknownKey(t *testing.T) {
	known := []string{"extension", "extensions", "aliases", "default", "rescue", "rescue_json", "die_quietly"}
	for _, tc := range []struct{ key, want string }{
		{"alias", "aliases"}, {"Aliases", "aliases"}, {"defualt", "default"}, {"die_quitely", "die_quietly"},
		{"extension", "extension"}, {"extensionss", "extensions"}, {"anchors", ""}, {"x-foo", ""}, {"rescue_jsn", "rescue_json"},
	} {
		if got := Suggest(tc.key, known); got != tc.want {
			t.Errorf("Suggest(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
	d, root := decode(t, "tls:\n  moed: x\n  colour: y\n")
	kvs, _ := d.Pairs(d.Resolve(root.Content[1]), "tls")
	for _, kv := range kvs {
		d.UnknownKey(kv.Key, "tls", []string{"mode", "email"})
	}
	want := `f.yaml:2:3: tls.moed: unknown key "moed" (did you mean mode?)` + "\n" +
		`f.yaml:3:3: tls.colour: unknown key "colour" (want mode, email)`
	if got := d.Diags.Err().Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestDiagnosticFormat(t *testing.T) {
	for _, tc := range []struct {
		d    Diagnostic
		want string
	}{
		{Diagnostic{File: "f", Pos: Pos{3, 5}, Path: "a.b", Msg: "m"}, "f:3:5: a.b: m"},
		{Diagnostic{File: "f", Pos: Pos{3, 5}, Path: "a.b", Severity: Warning, Msg: "m"}, "f:3:5: warning: a.b: m"},
		{Diagnostic{File: "f", Pos: Pos{Line: 3}, Msg: "m"}, "f:3: m"},
		{Diagnostic{File: "f", Path: "p", Msg: "m"}, "f: p: m"},
		{Diagnostic{File: "f", Severity: Warning, Msg: "m"}, "f: warning: m"},
		{Diagnostic{Env: "QUIETMX_X", Path: "x", Msg: "m"}, "QUIETMX_X: m"},
		{Diagnostic{Env: "QUIETMX_X", Severity: Warning, Msg: "m"}, "QUIETMX_X: warning: m"},
		{Diagnostic{Path: "p", Msg: "m"}, "p: m"},
	} {
		if got := tc.d.String(); got != tc.want || tc.d.Error() != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	if (Diagnostic{}).Severity != Error {
		t.Errorf("the zero Diagnostic must be an error")
	}
	js, _ := json.Marshal(Diagnostics{{File: "f", Pos: Pos{1, 2}, Path: "p", Severity: Warning, Msg: "m"}})
	if want := `[{"file":"f","line":1,"col":2,"path":"p","severity":"warning","message":"m"}]`; string(js) != want {
		t.Errorf("JSON %s, want %s", js, want)
	}
	ds := Diagnostics{{Severity: Warning, Msg: "w"}, {Msg: "e"}}
	if !ds.HasErrors() || len(ds.Errors()) != 1 || ds.Err().Error() != "e" || (Diagnostics{{Severity: Warning}}).Err() != nil {
		t.Errorf("HasErrors/Errors/Err: %v %v %v", ds.HasErrors(), ds.Errors(), ds.Err())
	}
}

// FuzzDecode: Decode never panics; every syntax error has a line and a
// column inside the file; walking every mapping stays within the budget.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"a: 1\nb: {c: d\n", "a: [b\n", "a: *x\n", "a: &a {b: 1}\nc: {<<: *a, d: 2}\n", bomb(),
		"a: \"x\nb: 'y\n", "? [a, b]\n: c\n", "a: !!binary x\n", "%YAML 1.1\n---\na: 1\n", "a:\n\t- b\n",
		"a: 1\na: 2\n", "x: &x {k: 1, k: 2}\ny: {<<: [*x, *x]}\n", "- &a [*a]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := New("f.yaml")
		root, ok := d.Decode(data)
		if !ok {
			lines := strings.Count(string(data), "\n") + 1
			if len(d.Diags) != 1 || d.Diags[0].Severity != Error || d.Diags[0].Line < 1 || d.Diags[0].Line > lines || d.Diags[0].Col < 1 {
				t.Fatalf("syntax error without a place in the file: %v", d.Diags)
			}
			return
		}
		seen := map[*yaml.Node]bool{}
		var walk func(n *yaml.Node, depth int)
		walk = func(n *yaml.Node, depth int) {
			n = d.Resolve(n)
			if n == nil || seen[n] || depth > 100 {
				return
			}
			seen[n] = true
			switch n.Kind {
			case yaml.MappingNode:
				kvs, err := d.Pairs(n, "")
				if err != nil {
					return
				}
				for _, kv := range kvs {
					walk(kv.Val, depth+1)
				}
			case yaml.SequenceNode:
				for _, c := range n.Content {
					walk(c, depth+1)
				}
			case yaml.ScalarNode:
				d.Bool(n, "")
			}
		}
		walk(root, 0)
		for _, dg := range d.Diags {
			if dg.Line < 1 {
				t.Fatalf("diagnostic without a line: %v", dg)
			}
		}
	})
}
