package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
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
	m := make(map[string]json.RawMessage, 16)
	err := eachMember(b, func(k []byte, v []byte) error {
		m[intern(k)] = v
		return nil
	})
	return m, err
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
	c, payload, err := decodeEnvelope(value)
	if err != nil {
		return c, errScan
	}
	if payload != nil {
		// unwrapConnect unwraps once: a payload that is itself wrapped is
		// left to the standard decoder.
		if c, payload, err = decodeEnvelope(payload); err != nil || payload != nil {
			return c, errScan
		}
	}
	if key != nil && c.Op != OpTruncate {
		if key, err = connectPayload(key); err != nil {
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
			var names []string
			if err := json.Unmarshal(v, &names); err != nil {
				return errScan
			}
			if len(names) > 0 {
				c.Unchanged = make(map[string]bool, len(names))
			}
			for _, n := range names {
				c.Unchanged[n] = true
			}
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
// k itself.
func fold(k []byte) string {
	for _, name := range knownNames {
		if len(k) >= len(name) && bytes.EqualFold(k, []byte(name)) {
			return name
		}
	}
	return ""
}

// knownNames are the members the decoders read (see envelope.go).
var knownNames = []string{memberOp, memberAfter, memberSource, memberTransaction, memberUnchanged, memberSchema, memberPayload, memberTsMs, memberTsUs, memberLSN, memberCommitLSN, memberTotalOrder, memberKeyOrder}
