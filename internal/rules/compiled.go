package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"quietmx/internal/atomicfile"
	"quietmx/internal/authres"
	"slices"
	"sort"
	"sync"
)

// The compiled form, like a Postfix map built by postmap: a small header
// (everything but the aliases), a sorted key table, and each alias entry
// encoded on its own. Loading reads the header and the key table; an entry
// is decoded only when routing looks its key up, so a delivery costs the
// same with 20 aliases or 20,000.
//
//	magic | sha256(rule file) | u32 len | header JSON | u32 n |
//	n × (u32 len | key | u32 offset | u32 len) | entries (JSON)
var compiledMagic = []byte("quietmx-rules-v2\n")

type compiledHeader struct {
	Extension     string                         `json:"extension,omitempty"`
	Rematch       []rematch                      `json:"rematch,omitempty"`
	Default       *Entry                         `json:"default,omitempty"`
	Rescue        string                         `json:"rescue,omitempty"`
	RescueJSON    bool                           `json:"rescue_json,omitempty"`
	DieQuietly    bool                           `json:"die_quietly,omitempty"`
	ForwardSender string                         `json:"forward_sender,omitempty"`
	RejectMode    string                         `json:"reject_mode,omitempty"`
	Tests         []Test                         `json:"tests,omitempty"`
	DMARCFail     map[string]authres.Disposition `json:"dmarc_fail,omitempty"`
}

type rematch struct {
	Pattern string `json:"pattern"`
	Target  string `json:"target"`
	Pos     Pos    `json:"pos"`
}

// Compile writes the compiled form of data (which must parse) beside path.
func Compile(path string, data []byte) error {
	set, findings := Parse(path, data)
	if set == nil || findings.HasErrors() {
		// Delivery trusts a compiled form without parsing: only a valid
		// file may have one.
		return fmt.Errorf("cannot compile: %w", findings.Err())
	}
	out, err := encodeCompiled(set, sha256.Sum256(data))
	if err != nil {
		return fmt.Errorf("compile %s: %w", path, err)
	}
	return atomicfile.Write(CompiledPath(path), out, 0o644)
}

func encodeCompiled(set *Set, sum [32]byte) ([]byte, error) {
	h := compiledHeader{Default: set.Default, Rescue: set.Rescue, RescueJSON: set.RescueJSON,
		DieQuietly: set.DieQuietly, ForwardSender: set.ForwardSender, RejectMode: set.RejectMode, Tests: set.Tests, DMARCFail: set.DMARCFail}
	if set.Extension != nil {
		h.Extension = set.Extension.Source
	}
	for _, r := range set.Rematch {
		h.Rematch = append(h.Rematch, rematch{r.Pattern.Source, r.Target, r.Pos})
	}
	head, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(set.Aliases))
	for k := range set.Aliases {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var table, blob bytes.Buffer
	for _, k := range keys {
		e, err := json.Marshal(set.Aliases[k])
		if err != nil {
			return nil, err
		}
		table.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(k))))
		table.WriteString(k)
		table.Write(binary.LittleEndian.AppendUint32(nil, uint32(blob.Len())))
		table.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(e))))
		blob.Write(e)
	}
	var b bytes.Buffer
	b.Write(compiledMagic)
	b.Write(sum[:])
	b.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(head))))
	b.Write(head)
	b.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(keys))))
	b.Write(table.Bytes())
	b.Write(blob.Bytes())
	return b.Bytes(), nil
}

var errCompiled = errors.New("compiled form is truncated or corrupt")

// compiledIndex serves alias lookups from a compiled file's bytes. A Set
// is shared by concurrent deliveries in the resident agent, so the cache
// of decoded entries is safe for concurrent use.
type compiledIndex struct {
	keys    []string
	offsets [][2]uint32
	blob    []byte
	decoded sync.Map // key → *Entry
}

func (ix *compiledIndex) lookup(key string) *Entry {
	i := sort.SearchStrings(ix.keys, key)
	if i >= len(ix.keys) || ix.keys[i] != key {
		return nil
	}
	if e, ok := ix.decoded.Load(key); ok {
		return e.(*Entry)
	}
	o := ix.offsets[i]
	var e Entry
	if err := json.Unmarshal(ix.blob[o[0]:o[0]+o[1]], &e); err != nil {
		// Checked when the file was read; cannot happen.
		e = Entry{Key: key, Actions: []*Action{{Problem: "compiled rule entry unreadable: " + err.Error()}}}
	}
	got, _ := ix.decoded.LoadOrStore(key, &e)
	return got.(*Entry)
}

// readCompiled returns the compiled Set only when it was built from content
// with this hash; a stale, truncated or corrupt file is an error.
func readCompiled(path string, sum [32]byte) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rest, ok := bytes.CutPrefix(data, compiledMagic)
	if !ok || len(rest) < len(sum) || !bytes.Equal(rest[:len(sum)], sum[:]) {
		return nil, errors.New("compiled form is stale or not ours")
	}
	rest = rest[len(sum):]
	u32 := func() (uint32, bool) {
		if len(rest) < 4 {
			return 0, false
		}
		v := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		return v, true
	}
	n, ok := u32()
	if !ok || uint64(n) > uint64(len(rest)) {
		return nil, errCompiled
	}
	var h compiledHeader
	if err := json.Unmarshal(rest[:n], &h); err != nil {
		return nil, errCompiled
	}
	rest = rest[n:]
	count, ok := u32()
	if !ok || uint64(count) > uint64(len(rest))/12 {
		return nil, errCompiled
	}
	ix := &compiledIndex{keys: make([]string, 0, count), offsets: make([][2]uint32, 0, count)}
	for range count {
		kl, ok := u32()
		if !ok || uint64(kl) > uint64(len(rest)) {
			return nil, errCompiled
		}
		ix.keys = append(ix.keys, string(rest[:kl]))
		rest = rest[kl:]
		off, ok1 := u32()
		ln, ok2 := u32()
		if !ok1 || !ok2 {
			return nil, errCompiled
		}
		ix.offsets = append(ix.offsets, [2]uint32{off, ln})
	}
	ix.blob = rest
	for i, o := range ix.offsets {
		if uint64(o[0])+uint64(o[1]) > uint64(len(ix.blob)) || (i > 0 && ix.keys[i-1] >= ix.keys[i]) {
			return nil, errCompiled
		}
	}
	set := &Set{Default: h.Default, Rescue: h.Rescue, RescueJSON: h.RescueJSON, DieQuietly: h.DieQuietly,
		ForwardSender: h.ForwardSender, RejectMode: h.RejectMode, Tests: h.Tests, DMARCFail: h.DMARCFail, index: ix}
	if !slices.Contains(rejectModes, set.RejectMode) {
		// Absent: a form compiled before reject_mode existed, so refuse.
		// Anything else is not ours.
		if set.RejectMode != "" {
			return nil, errCompiled
		}
		set.RejectMode = RejectRefuse
	}
	if h.Extension != "" {
		if set.Extension, err = CompilePattern(h.Extension); err != nil {
			return nil, err
		}
	}
	for _, r := range h.Rematch {
		p, err := CompilePattern(r.Pattern)
		if err != nil {
			return nil, err
		}
		set.Rematch = append(set.Rematch, Rematch{Pattern: p, Target: r.Target, Pos: r.Pos})
	}
	return set, nil
}
