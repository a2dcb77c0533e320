package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/scoop-cdc/scoop/schema"
)

// Change is a change event as a sink sees it, decoded from Kafka (its
// envelope fields are those of schema.Change, plus where it was read from).
type Change struct {
	Op  schema.Op
	Key map[string]json.RawMessage
	// KeyID identifies the row within a batch: the Kafka key as written by
	// the source (canonical), or the marshalled Key.
	KeyID      string
	After      map[string]json.RawMessage // nil for deletes and truncates
	Unchanged  map[string]bool            // TOAST columns to leave as they are
	CommitTime time.Time                  // source commit time (µs precision)
	LSN        uint64
	CommitLSN  uint64 // commit LSN of the source transaction (0 for snapshot rows)
	// Order is the change's place in its transaction: (CommitLSN, Order) is
	// its position, unique and increasing in source order (see doc.go).
	Order uint64
	// KeyOrder is the change's place among its transaction's changes of
	// the same key (0 when the producer did not say).
	KeyOrder uint64
	// Prev is the event's PrevHeader (direction both, see reverse.go).
	Prev string

	// Where it was read from.
	Topic     string
	Partition int
	Offset    int64
}

// WrittenColumns lists the target columns a change writes: the columns of
// After that the target has, minus unchanged TOAST columns, sorted (so equal
// shapes give equal statements, which the drivers prepare once).
func (c *Change) WrittenColumns(target map[string]Column) []string {
	names := make([]string, 0, len(c.After))
	for n := range c.After {
		if _, ok := target[n]; ok && !c.Unchanged[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Column is a column of a mapping's target table.
type Column struct {
	Name     string // in the target
	Source   string // in the monolith
	SQLType  string // PostgreSQL type as format_type prints it, e.g. numeric(30,10)
	BaseType string // base type name (domains resolved), e.g. int4, _text, timestamptz
	Array    bool
	Elem     string // element base type name of an array
	Key      bool
	NotNull  bool
	// EventType is the monolith column's base type (element type for
	// arrays) when columns.types converted it: the type its events are
	// encoded for (see EventValue).
	EventType string
}

// EventValue returns an event's value for the column in the forms the
// sinks write: Debezium's temporal numbers (date, timestamp, time) read
// back as PostgreSQL's text, by the type the event was encoded for (see
// schema.TextJSON). Other values are returned as they are.
func (c Column) EventValue(raw json.RawMessage) (json.RawMessage, error) {
	typ := c.BaseType
	if c.Array {
		typ = c.Elem
	}
	if c.EventType != "" {
		typ = c.EventType
	}
	return schema.TextJSON(typ, raw)
}

// Target is the shape of a mapping's target table.
type Target struct {
	Table   string
	Columns []Column
}

// KeyColumns lists the key columns.
func (t *Target) KeyColumns() []Column {
	var k []Column
	for _, c := range t.Columns {
		if c.Key {
			k = append(k, c)
		}
	}
	return k
}

// Sink applies changes to a service store. Apply is idempotent: applying a
// batch again (after a crash, a retry or a replay) leaves the store as one
// application would. Errors that retrying cannot fix are wrapped with
// Permanent.
type Sink interface {
	Apply(ctx context.Context, batch []Change) error
	Close(ctx context.Context) error
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks an error that no retry can fix (the event goes to the
// dead-letter topic).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// DecodeChange decodes a Kafka record written by scoop's source (or any
// producer of Debezium-style JSON envelopes, with or without schemas); see
// schema.DecodeChange. A tombstone (nil value) yields ok=false and no error.
func DecodeChange(key, value []byte) (Change, bool, error) {
	d, ok, err := schema.DecodeChange(key, value)
	return Change{
		Op: d.Op, Key: d.Key, After: d.After, Unchanged: d.Unchanged, CommitTime: d.CommitTime,
		LSN: d.LSN, CommitLSN: d.CommitLSN, Order: d.Order, KeyOrder: d.KeyOrder,
	}, ok, err
}

// Shape applies the mapping's column selection and renames to a change.
func (m *Mapping) Shape(c *Change) {
	if len(m.Columns.Include) == 0 && len(m.Columns.Exclude) == 0 && len(m.Columns.Rename) == 0 {
		return
	}
	c.Key = m.shapeRow(c.Key)
	c.After = m.shapeRow(c.After)
	if c.Unchanged != nil {
		u := make(map[string]bool, len(c.Unchanged))
		for k := range c.Unchanged {
			if to, ok := m.TargetColumn(k); ok {
				u[to] = true
			}
		}
		c.Unchanged = u
	}
}

func (m *Mapping) shapeRow(row map[string]json.RawMessage) map[string]json.RawMessage {
	if row == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(row))
	for k, v := range row {
		if to, ok := m.TargetColumn(k); ok {
			out[to] = v
		}
	}
	return out
}

// ShapeTarget turns the monolith table's columns into the target's.
// Key columns are always kept: a mapping that excludes one is refused.
func (m *Mapping) ShapeTarget(source []Column) (Target, error) {
	t := Target{Table: m.TargetTable()}
	for _, c := range source {
		to, ok := m.TargetColumn(c.Source)
		if !ok {
			if c.Key {
				return t, &MappingError{Mapping: m.Name, Field: "columns", Problem: fmt.Sprintf("key column %q is excluded", c.Source), Fix: "keep every primary-key column in the mapping"}
			}
			continue
		}
		c.Name = to
		if typ, ok := m.Columns.Types[c.Source]; ok {
			c.EventType = c.BaseType
			if c.Array {
				c.EventType = c.Elem
			}
			c.SQLType, c.BaseType, c.Array, c.Elem = typ, ConvertibleTypes[typ], false, ""
			if typ == "timestamptz" {
				c.SQLType = "timestamp with time zone" // as format_type spells it
			}
		}
		t.Columns = append(t.Columns, c)
	}
	for _, name := range append(append([]string{}, m.Columns.Include...), m.Columns.Exclude...) {
		if !hasSource(source, name) {
			return t, &MappingError{Mapping: m.Name, Field: "columns", Problem: fmt.Sprintf("column %q does not exist in %s", name, m.Source), Fix: "use a column of the source table"}
		}
	}
	for _, name := range sortedKeys(m.Columns.Types) {
		if !hasSource(source, name) {
			return t, &MappingError{Mapping: m.Name, Field: "columns.types", Problem: fmt.Sprintf("column %q does not exist in %s", name, m.Source), Fix: "use a column of the source table"}
		}
	}
	for _, name := range sortedKeys(m.Columns.Rename) {
		if !hasSource(source, name) {
			return t, &MappingError{Mapping: m.Name, Field: "columns.rename", Problem: fmt.Sprintf("column %q does not exist in %s", name, m.Source), Fix: "use a column of the source table"}
		}
	}
	return t, nil
}

func hasSource(cols []Column, name string) bool {
	for _, c := range cols {
		if c.Source == name {
			return true
		}
	}
	return false
}

// Collapse keeps the last change of each key in batch order, carrying over
// values that a later update left unchanged (TOAST). A truncate cuts the
// batch: the changes before it stay before it. Sinks that can apply a
// batch's keys in any order rely on it (one change per key).
func Collapse(batch []Change) []Change {
	out := make([]Change, 0, len(batch))
	index := map[string]int{}
	for _, c := range batch {
		if c.Op == schema.OpTruncate {
			out = append(out, c)
			index = map[string]int{}
			continue
		}
		k := c.KeyID
		if k == "" {
			b, _ := json.Marshal(c.Key)
			k = string(b)
		}
		if i, ok := index[k]; ok {
			prev := out[i]
			if c.Op != schema.OpDelete && prev.Op != schema.OpDelete && len(c.Unchanged) > 0 {
				merged := c
				merged.After = make(map[string]json.RawMessage, len(c.After))
				for n, v := range c.After {
					merged.After[n] = v
				}
				merged.Unchanged = map[string]bool{}
				for n := range c.Unchanged {
					if v, ok := prev.After[n]; ok && !prev.Unchanged[n] {
						merged.After[n] = v
					} else {
						merged.Unchanged[n] = true
					}
				}
				c = merged
			}
			out[i] = c
			continue
		}
		index[k] = len(out)
		out = append(out, c)
	}
	return out
}
