package servicewriter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"

	"github.com/scoop-cdc/scoop/schema"
)

// Supported lists the CQL types a table may have, each with the Go values
// a row may hold for it and how the event writes it:
//
//	text       string (valid UTF-8)                      JSON string
//	int        int, int8..int64, uint8..uint64 in range   JSON number
//	bigint     int, int8..int64, uint8..uint64 in range   JSON number
//	double     float64, float32                           JSON number; "NaN", "Infinity", "-Infinity" as strings
//	boolean    bool                                       true / false
//	decimal    *inf.Dec, inf.Dec, string ("12.50")         JSON string, scale kept ("12.50")
//	timestamp  time.Time, whole milliseconds              JSON string, RFC 3339 in UTC ("2024-05-01T10:00:00.25Z")
//	uuid       gocql.UUID, [16]byte, string               JSON string, canonical lower case
//
// nil is NULL (not allowed in a key column). These are the forms scoop's
// own events use for the same types, so the reverse flow reads them like
// any other event. A table with a column of another type is refused by New.
var Supported = []string{"text", "int", "bigint", "double", "boolean", "decimal", "timestamp", "uuid"}

// column is one column of the service's table.
type column struct {
	name string
	typ  string // CQL type as system_schema.columns spells it
	key  bool   // partition key or clustering column
}

// table is the service's table: its columns in the order events write them
// (the primary key first, in key order, then the others by name).
type table struct {
	keyspace, name string
	quoted         string // "keyspace"."name"
	cols           []column
	byName         map[string]int
	nkeys          int
}

func newTable(keyspace, name string, cols []column) (*table, error) {
	t := &table{keyspace: keyspace, name: name, quoted: schema.QuoteQualified(keyspace, name), cols: cols, byName: map[string]int{}}
	for i, c := range cols {
		if !supported(c.typ) {
			return nil, fmt.Errorf("table %s.%s: column %q has CQL type %s, which the service writer does not support (supported: %s)",
				keyspace, name, c.name, c.typ, strings.Join(Supported, ", "))
		}
		if c.key {
			if i != t.nkeys {
				return nil, fmt.Errorf("table %s.%s: key columns must come first", keyspace, name)
			}
			t.nkeys++
		}
		t.byName[c.name] = i
	}
	if t.nkeys == 0 {
		return nil, fmt.Errorf("table %s.%s: no primary key column", keyspace, name)
	}
	return t, nil
}

func supported(typ string) bool {
	for _, s := range Supported {
		if s == typ {
			return true
		}
	}
	return false
}

// describe reads the table's columns from system_schema.
func describe(ctx context.Context, s *gocql.Session, keyspace, name string) (*table, error) {
	iter := s.Query(`SELECT column_name, type, kind, position FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?`,
		keyspace, name).WithContext(ctx).Iter()
	type row struct {
		column
		kind string
		pos  int
	}
	var rows []row
	var r row
	for iter.Scan(&r.name, &r.typ, &r.kind, &r.pos) {
		rows = append(rows, r)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("read the columns of %s.%s: %w", keyspace, name, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("table %s.%s does not exist (create it before the writer; names are case-sensitive)", keyspace, name)
	}
	rank := map[string]int{"partition_key": 0, "clustering": 1}
	for i := range rows {
		switch rows[i].kind {
		case "partition_key", "clustering":
			rows[i].key = true
		case "static":
			return nil, fmt.Errorf("table %s.%s: static column %q is not supported (a static cell belongs to a partition, not to the row an event carries)", keyspace, name, rows[i].name)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.key != b.key {
			return a.key
		}
		if a.key {
			if rank[a.kind] != rank[b.kind] {
				return rank[a.kind] < rank[b.kind]
			}
			return a.pos < b.pos
		}
		return a.name < b.name
	})
	cols := make([]column, len(rows))
	for i, r := range rows {
		cols[i] = r.column
	}
	return newTable(keyspace, name, cols)
}

// cell is one checked value: what Cassandra is given and what the event
// says.
type cell struct {
	cql  any    // nil for NULL
	json []byte // the value in the event
}

// cells checks a row (whole: every column) or a key (exactly the key
// columns) and converts its values; it names the first column at fault.
func (t *table) cells(row map[string]any, keyOnly bool) ([]cell, error) {
	n := len(t.cols)
	if keyOnly {
		n = t.nkeys
	}
	for name := range row {
		i, ok := t.byName[name]
		if !ok {
			return nil, fmt.Errorf("column %q is not a column of %s.%s", name, t.keyspace, t.name)
		}
		if i >= n {
			return nil, fmt.Errorf("column %q is not a key column of %s.%s (a delete names the key only: %s)", name, t.keyspace, t.name, t.keyNames())
		}
	}
	out := make([]cell, n)
	for i, c := range t.cols[:n] {
		v, ok := row[c.name]
		switch {
		case !ok && c.key:
			return nil, fmt.Errorf("key column %q is missing (the key of %s.%s is %s)", c.name, t.keyspace, t.name, t.keyNames())
		case !ok:
			return nil, fmt.Errorf("column %q is missing: Upsert writes the whole row (give nil for NULL)", c.name)
		}
		var err error
		if out[i], err = convert(c.typ, v); err != nil {
			return nil, fmt.Errorf("column %q (%s): %w", c.name, c.typ, err)
		}
		if c.key && out[i].cql == nil {
			return nil, fmt.Errorf("key column %q is nil", c.name)
		}
	}
	return out, nil
}

func (t *table) keyNames() string {
	names := make([]string, t.nkeys)
	for i, c := range t.cols[:t.nkeys] {
		names[i] = strconv.Quote(c.name)
	}
	return "(" + strings.Join(names, ", ") + ")"
}

// convert checks a Go value for a CQL type.
func convert(typ string, v any) (cell, error) {
	if v == nil {
		return cell{json: []byte("null")}, nil
	}
	wrong := func(want string) (cell, error) {
		return cell{}, fmt.Errorf("a value of Go type %T cannot be written (give %s)", v, want)
	}
	switch typ {
	case "text":
		s, ok := v.(string)
		if !ok {
			return wrong("a string")
		}
		if !utf8.ValidString(s) {
			return cell{}, errors.New("the string is not valid UTF-8")
		}
		b, _ := json.Marshal(s)
		return cell{cql: s, json: b}, nil
	case "int", "bigint":
		lo, hi := int64(math.MinInt32), int64(math.MaxInt32)
		if typ == "bigint" {
			lo, hi = math.MinInt64, math.MaxInt64
		}
		i, ok, inRange := integer(v, lo, hi)
		if !ok {
			return wrong("an integer")
		}
		if !inRange {
			return cell{}, fmt.Errorf("%v is out of the range of a CQL %s", v, typ)
		}
		b := strconv.AppendInt(nil, i, 10)
		if typ == "int" {
			return cell{cql: int32(i), json: b}, nil
		}
		return cell{cql: i, json: b}, nil
	case "double":
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case float32:
			f = float64(x)
		default:
			return wrong("a float64")
		}
		var b []byte
		switch {
		case math.IsNaN(f):
			b = []byte(`"NaN"`)
		case math.IsInf(f, 1):
			b = []byte(`"Infinity"`)
		case math.IsInf(f, -1):
			b = []byte(`"-Infinity"`)
		default:
			b = strconv.AppendFloat(nil, f, 'g', -1, 64)
		}
		return cell{cql: f, json: b}, nil
	case "boolean":
		x, ok := v.(bool)
		if !ok {
			return wrong("a bool")
		}
		return cell{cql: x, json: strconv.AppendBool(nil, x)}, nil
	case "decimal":
		var d *inf.Dec
		switch x := v.(type) {
		case *inf.Dec:
			if x == nil {
				return cell{json: []byte("null")}, nil
			}
			d = x
		case inf.Dec:
			d = &x
		case string:
			var ok bool
			if d, ok = new(inf.Dec).SetString(x); !ok {
				return cell{}, fmt.Errorf("%q is not a decimal number (e.g. \"12.50\")", x)
			}
		default:
			return wrong("a *inf.Dec or a decimal string")
		}
		b, _ := json.Marshal(d.String())
		return cell{cql: d, json: b}, nil
	case "timestamp":
		x, ok := v.(time.Time)
		if !ok {
			return wrong("a time.Time")
		}
		if x.Year() < 1 || x.Year() > 9999 {
			return cell{}, fmt.Errorf("%s is outside the years 1 to 9999", x)
		}
		if x.Nanosecond()%int(time.Millisecond) != 0 {
			return cell{}, fmt.Errorf("%s has a fraction of a millisecond, which a CQL timestamp does not keep (give t.Truncate(time.Millisecond))", x.Format(time.RFC3339Nano))
		}
		b, _ := json.Marshal(x.UTC().Format(time.RFC3339Nano))
		return cell{cql: x, json: b}, nil
	case "uuid":
		var u gocql.UUID
		switch x := v.(type) {
		case gocql.UUID:
			u = x
		case [16]byte:
			u = x
		case string:
			var err error
			if u, err = gocql.ParseUUID(x); err != nil {
				return cell{}, fmt.Errorf("%q is not a UUID", x)
			}
		default:
			return wrong("a gocql.UUID, a [16]byte or a UUID string")
		}
		b, _ := json.Marshal(u.String())
		return cell{cql: u, json: b}, nil
	}
	return cell{}, fmt.Errorf("CQL type %s is not supported", typ)
}

// integer returns v as an int64 when it is a Go integer, and whether it
// lies in [lo, hi].
func integer(v any, lo, hi int64) (i int64, ok, inRange bool) {
	switch x := v.(type) {
	case int:
		i = int64(x)
	case int8:
		i = int64(x)
	case int16:
		i = int64(x)
	case int32:
		i = int64(x)
	case int64:
		i = x
	case uint8:
		i = int64(x)
	case uint16:
		i = int64(x)
	case uint32:
		i = int64(x)
	case uint:
		if uint64(x) > math.MaxInt64 {
			return 0, true, false
		}
		i = int64(x)
	case uint64:
		if x > math.MaxInt64 {
			return 0, true, false
		}
		i = int64(x)
	default:
		return 0, false, false
	}
	return i, true, i >= lo && i <= hi
}
