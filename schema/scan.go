package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// A small JSON scanner for the hot path of the sinks: it walks an object's
// members and hands out their raw values without building anything, so
// decoding an event costs one pass and one map. Anything it does not expect
// makes DecodeChange fall back to encoding/json (decode.go), which also
// words the errors.

var errScan = errors.New("unexpected JSON")

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"' and
// whether it contains escapes.
func skipString(b []byte, i int) (int, bool, error) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped, nil
		}
	}
	return 0, false, errScan
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	i = skipSpace(b, i)
	if i >= len(b) {
		return 0, errScan
	}
	switch b[i] {
	case '"':
		j, _, err := skipString(b, i)
		return j, err
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				k, _, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = k - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errScan
	default: // number, true, false, null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\t' && b[j] != '\r' {
			j++
		}
		if j == i {
			return 0, errScan
		}
		return j, nil
	}
}

// eachMember calls fn with each member of the object in b (keys unescaped,
// values raw).
func eachMember(b []byte, fn func(key []byte, val []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errScan
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errScan
		}
		end, escaped, err := skipString(b, i)
		if err != nil {
			return err
		}
		key := b[i+1 : end-1]
		if escaped || !utf8.Valid(key) {
			var k string
			if err := json.Unmarshal(b[i:end], &k); err != nil {
				return errScan
			}
			key = []byte(k)
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return errScan
		}
		start := skipSpace(b, i+1)
		vend, err := skipValue(b, start)
		if err != nil {
			return err
		}
		if err := fn(key, b[start:vend]); err != nil {
			return err
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return errScan
		}
		if b[i] == '}' {
			if skipSpace(b, i+1) != len(b) {
				return errScan
			}
			return nil
		}
		if b[i] != ',' {
			return errScan
		}
		i = skipSpace(b, i+1)
	}
}

// rawObject returns the members of an object as raw values (nil for null).
func rawObject(b []byte) (map[string]json.RawMessage, error) {
	if string(b) == "null" {
		return nil, nil
	}
	// The members are gathered first so that the map is made at its size
	// (a map of up to 8 is two allocations, a larger hint four or more).
	type member struct {
		name string
		val  []byte
	}
	var buf [32]member
	ms := buf[:0]
	if err := eachMember(b, func(k []byte, v []byte) error {
		ms = append(ms, member{intern(k), v})
		return nil
	}); err != nil {
		return nil, err
	}
	m := make(map[string]json.RawMessage, len(ms))
	for _, x := range ms {
		m[x.name] = x.val
	}
	return m, nil
}

// nameSet reads an array of strings (unchanged's column names) as a set,
// nil when it is empty.
func nameSet(b []byte) (map[string]bool, error) {
	var buf [16]string
	names := buf[:0]
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, errScan
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != ']' {
		if len(names) > 0 {
			if b[i] != ',' {
				return nil, errScan
			}
			i = skipSpace(b, i+1)
		}
		if i >= len(b) || b[i] != '"' {
			return nil, errScan
		}
		end, escaped, err := skipString(b, i)
		if err != nil {
			return nil, err
		}
		name := b[i+1 : end-1]
		if escaped || !utf8.Valid(name) {
			var n string
			if err := json.Unmarshal(b[i:end], &n); err != nil {
				return nil, errScan
			}
			name = []byte(n)
		}
		names = append(names, intern(name))
		i = skipSpace(b, end)
	}
	if i >= len(b) || skipSpace(b, i+1) != len(b) {
		return nil, errScan
	}
	if len(names) == 0 {
		return nil, nil
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set, nil
}

// Column names repeat in every event: intern them instead of allocating a
// string per member (bounded, so arbitrary input cannot grow it forever).
var names = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

func intern(k []byte) string {
	names.Lock()
	defer names.Unlock()
	if s, ok := names.m[string(k)]; ok {
		return s
	}
	s := string(k)
	if len(names.m) < 100000 {
		names.m[s] = s
	}
	return s
}

// decodeFast decodes scoop's envelope in one pass; errScan means "use the
// standard decoder". Kafka Connect's wrapping ({"schema":...,"payload":...},
// SCOOP_EVENT_SCHEMAS) is read on this path too: the schema member is only
// skipped over, never decoded (it is the same for every event of a table
// version), and the payload is decoded as the envelope.
func decodeFast(key, value []byte) (c Change, err error) {
	payload, ok := splitConnect(value)
	if !ok {
		if c, payload, err = decodeEnvelope(value); err != nil {
			return c, errScan
		}
	}
	if payload != nil {
		// unwrapConnect unwraps once: a payload that is itself wrapped is
		// left to the standard decoder.
		if c, payload, err = decodeEnvelope(payload); err != nil || payload != nil {
			return c, errScan
		}
	}
	if key != nil && c.Op != OpTruncate {
		if p, ok := splitConnect(key); ok {
			key = p
		} else if key, err = connectPayload(key); err != nil {
			return c, errScan
		}
		if c.Key, err = rawObject(key); err != nil {
			return c, errScan
		}
	}
	return c, nil
}

// connectPayload returns the payload of a key in Kafka Connect's wrapping,
// or the key itself, as unwrapConnect does.
func connectPayload(b []byte) ([]byte, error) {
	wrapped, payload := false, []byte(nil)
	err := eachMember(b, func(k []byte, v []byte) error {
		switch {
		case string(k) == memberSchema:
			wrapped = true
		case fold(k) == memberPayload:
			payload = v
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !wrapped:
		return b, nil
	case payload == nil || string(payload) == "null":
		return nil, errScan
	}
	return payload, nil
}

// decodeEnvelope decodes the members of scoop's envelope in value, or, when
// value is Kafka Connect's wrapping of one (a member named exactly schema,
// as unwrapConnect tells), returns its payload to decode instead.
func decodeEnvelope(value []byte) (c Change, payload []byte, err error) {
	var op []byte
	var source []byte
	wrapped := false
	// Member names match case-insensitively, as encoding/json matches them.
	err = eachMember(value, func(k []byte, v []byte) error {
		switch fold(k) {
		case memberOp:
			op = v
		case memberAfter:
			after, err := rawObject(v)
			c.After = after
			return err
		case memberSource:
			source = v
		case memberTransaction:
			if string(v) == "null" {
				return nil
			}
			return eachMember(v, func(k []byte, v []byte) error {
				var err error
				switch fold(k) {
				case memberTotalOrder:
					c.Order, err = strconv.ParseUint(string(v), 10, 64)
				case memberKeyOrder:
					c.KeyOrder, err = strconv.ParseUint(string(v), 10, 64)
				}
				return err
			})
		case memberUnchanged:
			if string(v) == "null" {
				return nil
			}
			unchanged, err := nameSet(v)
			c.Unchanged = unchanged
			return err
		case memberSchema:
			// Skipped by eachMember without being decoded; only an exact
			// name wraps (unwrapConnect), a folded one is ignored as
			// encoding/json ignores an unknown member.
			if string(k) == memberSchema {
				wrapped = true
			}
		case memberPayload:
			payload = v // the last one counts, as in encoding/json
		}
		return nil
	})
	if err != nil {
		return c, nil, errScan
	}
	if wrapped {
		if payload == nil || string(payload) == "null" {
			return c, nil, errScan
		}
		return Change{}, payload, nil
	}
	if len(op) != 3 || op[0] != '"' || op[2] != '"' {
		return c, nil, errScan
	}
	c.Op = Op(op[1])
	var tsMs, tsUs int64
	if source != nil {
		err = eachMember(source, func(k []byte, v []byte) error {
			var err error
			switch fold(k) {
			case memberTsMs:
				tsMs, err = strconv.ParseInt(string(v), 10, 64)
			case memberTsUs:
				tsUs, err = strconv.ParseInt(string(v), 10, 64)
			case memberLSN:
				if string(v) != "null" {
					c.LSN, err = strconv.ParseUint(string(v), 10, 64)
				}
			case memberCommitLSN:
				if string(v) != "null" {
					c.CommitLSN, err = strconv.ParseUint(string(v), 10, 64)
				}
			}
			return err
		})
		if err != nil {
			return c, nil, errScan
		}
	}
	c.CommitTime = commitTime(tsMs, tsUs)
	return c, nil, nil
}

// fold returns the known member name that k matches case-insensitively, or
// "" for any other member.
func fold(k []byte) string {
	// scoop's own events spell every name exactly: one switch (no
	// allocation, no loop), then case-insensitive matching for names of
	// the same length only (an unknown member, such as most of source's,
	// usually has no candidate at all).
	switch string(k) {
	case memberOp:
		return memberOp
	case memberAfter:
		return memberAfter
	case memberSource:
		return memberSource
	case memberTransaction:
		return memberTransaction
	case memberUnchanged:
		return memberUnchanged
	case memberSchema:
		return memberSchema
	case memberPayload:
		return memberPayload
	case memberTsMs:
		return memberTsMs
	case memberTsUs:
		return memberTsUs
	case memberLSN:
		return memberLSN
	case memberCommitLSN:
		return memberCommitLSN
	case memberTotalOrder:
		return memberTotalOrder
	case memberKeyOrder:
		return memberKeyOrder
	}
	// An ASCII name folds only to a name of its length; a non-ASCII one
	// may be longer (the Kelvin sign folds to k, as encoding/json matches).
	ascii := true
	for _, c := range k {
		ascii = ascii && c < utf8.RuneSelf
	}
	for _, name := range knownNames {
		if (len(k) == len(name) || !ascii && len(k) > len(name)) && bytes.EqualFold(k, []byte(name)) {
			return name
		}
	}
	return ""
}

// knownNames are the members the decoders read (see envelope.go).
var knownNames = []string{memberOp, memberAfter, memberSource, memberTransaction, memberUnchanged, memberSchema, memberPayload, memberTsMs, memberTsUs, memberLSN, memberCommitLSN, memberTotalOrder, memberKeyOrder}

// Kafka Connect's wrapping as scoop writes it: exactly these bytes before
// the schema, between it and the payload, and a closing brace after it.
const (
	connectPrefix = `{"` + memberSchema + `":`
	connectMiddle = `,"` + memberPayload + `":`
)

// splitConnect returns the payload of b when b is Kafka Connect's wrapping
// in scoop's layout, {"schema":S,"payload":P} with nothing else around,
// without decoding S or scanning P; ok=false leaves b to the general path
// (decodeEnvelope, connectPayload), which reads any member order and
// spacing. P is returned unchecked: the caller decodes it with eachMember,
// which refuses anything but one object.
func splitConnect(b []byte) (payload []byte, ok bool) {
	if len(b) < len(connectPrefix)+len(connectMiddle)+2 || string(b[:len(connectPrefix)]) != connectPrefix {
		return nil, false
	}
	end, ok := skipSchema(b, len(connectPrefix))
	if !ok || len(b)-end < len(connectMiddle)+2 || string(b[end:end+len(connectMiddle)]) != connectMiddle || b[len(b)-1] != '}' {
		return nil, false
	}
	payload = b[end+len(connectMiddle) : len(b)-1]
	if len(payload) == 0 || payload[0] != '{' {
		return nil, false
	}
	return payload, true
}

// The schema member of every event of a table version is the same bytes
// (the Encoder renders it once per table shape), so the schemas seen last
// are kept and an event's schema is skipped with one comparison instead of
// a scan. Copy-on-write: lookups take no lock.
const (
	schemaCacheSize = 32       // schemas kept (key and value of 16 tables)
	schemaCacheMin  = 64       // shorter schemas are scanned, not kept
	schemaCacheMax  = 64 << 10 // longer ones too: bounded memory
)

var (
	schemaCache   atomic.Pointer[[][]byte]
	schemaCacheMu sync.Mutex
)

// skipSchema returns the index after the JSON value starting at b[i]. A
// value equal to a kept schema is that schema (skipValue's end depends only
// on the bytes it passed), so comparing the bytes is enough.
func skipSchema(b []byte, i int) (int, bool) {
	rest := b[i:]
	if kept := schemaCache.Load(); kept != nil {
		for _, s := range *kept {
			if len(rest) > len(s) && string(rest[:len(s)]) == string(s) {
				return i + len(s), true
			}
		}
	}
	end, err := skipValue(b, i)
	if err != nil || b[i] != '{' {
		return 0, false
	}
	if n := end - i; n >= schemaCacheMin && n <= schemaCacheMax {
		keepSchema(b[i:end])
	}
	return end, true
}

// keepSchema adds a copy of s to the kept schemas, dropping the oldest.
func keepSchema(s []byte) {
	schemaCacheMu.Lock()
	defer schemaCacheMu.Unlock()
	var kept [][]byte
	if old := schemaCache.Load(); old != nil {
		kept = *old
	}
	if len(kept) >= schemaCacheSize {
		kept = kept[1:]
	}
	next := make([][]byte, len(kept), len(kept)+1)
	copy(next, kept)
	next = append(next, bytes.Clone(s))
	schemaCache.Store(&next)
}
