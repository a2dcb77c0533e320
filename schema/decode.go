package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ops lists the op letters an envelope may carry.
const ops = string(rune(OpCreate)) + string(rune(OpUpdate)) + string(rune(OpDelete)) + string(rune(OpRead)) + string(rune(OpTruncate))

type envelope struct {
	After     map[string]json.RawMessage `json:"after"`
	Op        string                     `json:"op"`
	Unchanged []string                   `json:"unchanged"`
	Source    struct {
		TsMs      int64  `json:"ts_ms"`
		TsUs      int64  `json:"ts_us"`
		LSN       uint64 `json:"lsn"`
		CommitLSN uint64 `json:"commit_lsn"`
	} `json:"source"`
	Transaction *struct {
		TotalOrder uint64 `json:"total_order"`
		KeyOrder   uint64 `json:"key_order"`
	} `json:"transaction"`
}

// unwrapConnect strips Kafka Connect's {"schema":..., "payload":...}, in
// either member order and any spacing (as the golden files store it).
func unwrapConnect(b []byte) []byte {
	if !hasMember(b, memberSchema) {
		return b
	}
	var w struct {
		Payload json.RawMessage `json:"payload"`
	}
	if json.Unmarshal(b, &w) == nil && w.Payload != nil {
		return w.Payload
	}
	return b
}

var errFound = errors.New("found")

// hasMember reports whether the object in b has a top-level member name.
func hasMember(b []byte, name string) bool {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte(`{"`+name+`"`)) {
		return true
	}
	return eachMember(b, func(k, _ []byte) error {
		if string(k) == name {
			return errFound
		}
		return nil
	}) == errFound
}

// DecodeChange decodes a Kafka record written by the Encoder (or any
// producer of Debezium-style JSON envelopes, with or without schemas).
// A tombstone (nil value) yields ok=false and no error.
func DecodeChange(key, value []byte) (c Change, ok bool, err error) {
	if value == nil {
		return c, false, nil
	}
	if fast, err := decodeFast(key, value); err == nil && validChange(&fast) == nil {
		return fast, true, nil
	}
	return decodeStandard(key, value)
}

// validChange checks what every decoder must have found.
func validChange(c *Change) error {
	if !bytes.ContainsRune([]byte(ops), rune(c.Op)) {
		return fmt.Errorf("decode event value: unknown op %q", string(rune(c.Op)))
	}
	if c.Op == OpTruncate {
		return nil
	}
	if c.Key == nil {
		return errors.New("decode event: no key")
	}
	if len(c.Key) == 0 {
		return errors.New("decode event key: empty key")
	}
	if c.Op != OpDelete && c.After == nil {
		return fmt.Errorf("decode event: op %q without after", string(rune(c.Op)))
	}
	return nil
}

func commitTime(tsMs, tsUs int64) time.Time {
	if tsUs != 0 {
		return time.UnixMicro(tsUs).UTC()
	}
	return time.UnixMilli(tsMs).UTC()
}

// decodeStandard is the encoding/json path: Kafka Connect wrapping, other
// producers' layouts, and the wording of errors.
func decodeStandard(key, value []byte) (c Change, ok bool, err error) {
	var env envelope
	if err := json.Unmarshal(unwrapConnect(value), &env); err != nil {
		return c, false, fmt.Errorf("decode event value: %w", err)
	}
	if len(env.Op) != 1 || !bytes.ContainsRune([]byte(ops), rune(env.Op[0])) {
		return c, false, fmt.Errorf("decode event value: unknown op %q", env.Op)
	}
	c.Op = Op(env.Op[0])
	c.LSN = env.Source.LSN
	c.CommitLSN = env.Source.CommitLSN
	if tx := env.Transaction; tx != nil {
		c.Order, c.KeyOrder = tx.TotalOrder, tx.KeyOrder
	}
	c.CommitTime = commitTime(env.Source.TsMs, env.Source.TsUs)
	if c.Op == OpTruncate {
		return c, true, nil
	}
	if key == nil {
		return c, false, errors.New("decode event: no key")
	}
	if err := json.Unmarshal(unwrapConnect(key), &c.Key); err != nil {
		return c, false, fmt.Errorf("decode event key: %w", err)
	}
	if len(c.Key) == 0 {
		return c, false, errors.New("decode event key: empty key")
	}
	if c.Op != OpDelete {
		if env.After == nil {
			return c, false, fmt.Errorf("decode event: op %q without after", env.Op)
		}
		c.After = env.After
	}
	if len(env.Unchanged) > 0 {
		c.Unchanged = make(map[string]bool, len(env.Unchanged))
		for _, u := range env.Unchanged {
			c.Unchanged[u] = true
		}
	}
	return c, true, nil
}
