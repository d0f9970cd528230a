package spec

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"quietmx/internal/check"
	"quietmx/internal/rules"
	"quietmx/internal/yamlconf"
)

// validateRules is package check's full validation (parse, alias loops,
// routing tests), the same the agent's `check` runs.
var validateRules = check.Rules

// loadRules fills s.Rules from the inline rules, the rules_file, or, when
// the spec has neither, a generated rule file sending every address to the
// first mailbox.
func (l *loader) loadRules() {
	switch {
	case l.rulesNode != nil && l.rulesFile != "":
		l.problem("rules_file", "give rules or rules_file, not both")
	case l.rulesNode != nil:
		l.inlineRules()
	case l.rulesFile != "":
		l.fileRules()
	default:
		l.generatedRules()
	}
}

// inlineRules takes the rules: block verbatim from the spec (comments,
// anchors and all), shifted left, so the rendered rule file reads as the
// operator wrote it and every finding maps back to a spec line.
func (l *loader) inlineRules() {
	n := l.Resolve(l.rulesNode)
	if n.Kind != yaml.MappingNode {
		l.problemAt(n, "rules", "want the rule file's mapping (extension, aliases, default, rescue, ...), got %s", yamlconf.Describe(n))
		return
	}
	if n.Style&yaml.FlowStyle != 0 || len(n.Content) == 0 {
		l.problemAt(n, "rules", "write the rules as an indented block (one key per line), or use rules_file")
		return
	}
	first := n.Content[0]
	text, start, ok := blockText(l.src, l.rulesKey.Line, first.Line, first.Column)
	if !ok {
		l.problemAt(n, "rules", "cannot take the rules block out of the spec; write it as an indented block, or use rules_file")
		return
	}
	lineOff, colOff := start-1, first.Column-1
	shift := func(p rules.Pos) (int, int) {
		if p.Line == 0 {
			return l.rulesKey.Line, l.rulesKey.Column
		}
		return p.Line + lineOff, p.Col + colOff
	}
	set, findings := validateRules(l.File, text)
	for _, f := range findings {
		f.File, f.Path = l.File, yamlconf.Join("rules", f.Path)
		f.Line, f.Col = shift(f.Pos)
		l.report(f)
	}
	if set == nil || findings.HasErrors() {
		return
	}
	header := fmt.Sprintf("# Rendered by quietmx from the rules: block of %s (line %d).\n# Edit the spec, not this file: every render replaces it.\n", displayName(l.File), l.rulesKey.Line)
	l.s.Rules = Rules{Origin: l.File + ":" + strconv.Itoa(l.rulesKey.Line), Data: append([]byte(header), text...), Set: set}
	l.volumeWarnings(set, func(p rules.Pos) Problem {
		line, col := shift(p)
		return Problem{File: l.File, Pos: rules.Pos{Line: line, Col: col}, Path: "rules"}
	})
}

func displayName(file string) string {
	if file == "" {
		return "the spec"
	}
	return filepath.Base(file)
}

// blockText returns the block mapping whose first key is at line, column,
// dedented by column-1, and the line it starts at: the comment lines above
// the first key (below keyLine, the line of "rules:"), then every line up
// to the first non-blank, non-comment line indented less. Trailing blank
// and less-indented comment lines (the next key's comments) are left out.
func blockText(src []byte, keyLine, line, column int) ([]byte, int, bool) {
	lines := strings.SplitAfter(string(src), "\n")
	if line < 1 || line > len(lines) || column < 1 {
		return nil, 0, false
	}
	indent := column - 1
	isBlank := func(s string) bool { return strings.TrimSpace(s) == "" }
	isComment := func(s string) bool { return strings.HasPrefix(strings.TrimLeft(s, " "), "#") }
	lead := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	if lead(lines[line-1]) != indent {
		return nil, 0, false // the first key shares its line with something else
	}
	start := line
	for start-1 > keyLine && isComment(lines[start-2]) && lead(lines[start-2]) >= indent {
		start--
	}
	end := line
	for end < len(lines) {
		s := lines[end]
		if !isBlank(s) && !isComment(s) && lead(s) < indent {
			break
		}
		end++
	}
	for end > line && (isBlank(lines[end-1]) || (isComment(lines[end-1]) && lead(lines[end-1]) < indent)) {
		end--
	}
	var b bytes.Buffer
	for _, s := range lines[start-1 : end] {
		cut := min(indent, lead(s))
		b.WriteString(s[cut:])
	}
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	return b.Bytes(), start, true
}

func (l *loader) fileRules() {
	f, ok := l.filePath("rules_file", l.rulesFile)
	if !ok {
		return
	}
	data, err := os.ReadFile(f)
	if err != nil {
		l.problem("rules_file", "cannot read the rule file: %v", err)
		return
	}
	set, findings := validateRules(f, data)
	for _, fd := range findings {
		l.report(fd)
	}
	if set == nil || findings.HasErrors() {
		return
	}
	l.s.Rules = Rules{Origin: f, Data: data, Set: set}
	l.volumeWarnings(set, func(p rules.Pos) Problem { return Problem{File: f, Pos: p} })
}

// generatedRules writes the rule file a spec without rules gets: each
// mailbox's login to its Maildir, and everything else to the first mailbox.
func (l *loader) generatedRules() {
	if l.failedUnder("mailboxes") || l.failedUnder("domains") {
		return // the rules would be generated from broken values
	}
	if len(l.s.Mailboxes) == 0 {
		l.problem("rules", "no rules and no mailboxes: mail would have nowhere to go (add mailboxes, rules or rules_file)")
		return
	}
	for _, m := range l.s.Mailboxes {
		if m.Login == "" || m.Maildir == "" {
			return // already reported
		}
	}
	var b strings.Builder
	b.WriteString("# Generated by quietmx: the spec has no rules, so each mailbox's login\n")
	b.WriteString("# gets its own mail, and every other address of every receiving domain\n")
	b.WriteString("# goes to the first mailbox. Plus-addresses (me+tag@) reach me@.\n")
	b.WriteString("# A message that cannot be delivered is kept in the first mailbox's Rescue\n")
	b.WriteString("# folder, where any IMAP client shows it.\n")
	b.WriteString("extension: \"\\\\+\"\n")
	fmt.Fprintf(&b, "rescue: %s\n", l.s.Mailboxes[0].Rescue())
	b.WriteString("aliases:\n")
	for _, m := range l.s.Mailboxes {
		fmt.Fprintf(&b, "  %s:\n    type: maildir\n    value: %s\n", strconv.Quote(m.Login), m.Maildir)
	}
	fmt.Fprintf(&b, "default:\n  type: maildir\n  value: %s\n", l.s.Mailboxes[0].Maildir)
	data := []byte(b.String())
	set, findings := validateRules("generated rules", data)
	if set == nil || findings.HasErrors() {
		// A bug, not the operator's fault; say so rather than render nothing quietly.
		l.problem("rules", "the generated rule file is invalid (a quietmx bug): %v", findings.Err())
		return
	}
	l.s.Rules = Rules{Origin: "generated", Data: data, Set: set, Generated: true}
}

// volumeWarnings warns about maildir, dump and rescue directories outside
// the mail volume: the agent can write there, but the mail is lost when
// the container is recreated.
func (l *loader) volumeWarnings(set *rules.Set, at func(rules.Pos) Problem) {
	outside := func(dir string) bool { return !strings.HasPrefix(dir, MailRoot+"/") }
	var found []Problem
	if set.Rescue != "" && outside(set.Rescue) {
		p := at(rules.Pos{})
		p.Path = yamlconf.Join(p.Path, "rescue")
		p.Msg = fmt.Sprintf("%q is outside the mail volume %s: rescued mail would be lost when the container is recreated", set.Rescue, MailRoot)
		found = append(found, p)
	}
	var walk func(a *rules.Action)
	walk = func(a *rules.Action) {
		for ; a != nil; a = a.OnError {
			if (a.Type == rules.TypeMaildir || a.Type == rules.TypeDump) && a.Value != "" && outside(a.Value) {
				p := at(a.Pos)
				p.Msg = fmt.Sprintf("%s %q is outside the mail volume %s: mail there would be lost when the container is recreated", a.Type, a.Value, MailRoot)
				found = append(found, p)
			}
		}
	}
	entries := []*rules.Entry{set.Default}
	for _, e := range set.Aliases {
		entries = append(entries, e)
	}
	seen := map[*rules.Action]bool{}
	for _, e := range entries {
		if e == nil {
			continue
		}
		for _, a := range e.Actions {
			if !seen[a] {
				seen[a] = true
				walk(a)
			}
		}
	}
	// Map order is random; report in file order.
	slices.SortStableFunc(found, func(a, b Problem) int { return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col)) })
	for _, p := range found {
		l.warn(p)
	}
}
