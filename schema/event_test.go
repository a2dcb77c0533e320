package schema

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "testdata", "golden", name)
	var pretty []byte
	var v any
	if err := json.Unmarshal(got, &v); err != nil {
		t.Fatalf("%s: invalid JSON: %v\n%s", name, err, got)
	}
	pretty, _ = json.MarshalIndent(v, "", "  ")
	pretty = append(pretty, '\n')
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, pretty, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test ./schema -update to create): %v", err)
	}
	if string(want) != string(pretty) {
		t.Errorf("%s differs from golden:\n%s\nwant:\n%s", name, pretty, want)
	}
}

func testTable() *Table {
	return &Table{OID: 1, Schema: "public", Name: "users", Columns: []Column{
		{Name: "id", Type: 20, Key: true},
		{Name: "email", Type: 25},
		{Name: "bio", Type: 25},
		{Name: "balance", Type: 1700},
	}}
}

func txt(s string) Value { return Value{Kind: Text, Data: []byte(s)} }

// goldenEvents are the events written to testdata/golden/NAME[-schemas].{key,value}.json,
// and the time they were encoded at.
func goldenEvents() (map[string]*Event, time.Time) {
	commit := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tbl := testTable()
	src := Source{LSN: 123456, CommitLSN: 123999, LastCommitLSN: 120000, TxID: 789, CommitTime: commit, Snapshot: SnapshotFalse, Order: 3, TableOrder: 2, KeyOrder: 1}
	update := Event{Op: OpUpdate, Table: tbl,
		Before: Row{txt("1"), {Kind: Absent}, {Kind: Absent}, {Kind: Absent}},
		After:  Row{txt("1"), txt("a@example.com"), {Kind: Unchanged}, txt("10.50")},
		Source: src}
	del := Event{Op: OpDelete, Table: tbl, Before: Row{txt("1"), {Kind: Null}, {Kind: Null}, {Kind: Null}}, Source: src}
	// The first row of a snapshot: no transaction, the snapshot's
	// consistent point as its LSN, marked "first" as Debezium marks it.
	read := Event{Op: OpRead, Table: tbl, After: Row{txt("2"), txt("b@example.com"), {Kind: Null}, txt("0.5")},
		Source: Source{LSN: 100000, CommitTime: commit.Add(-time.Minute), Snapshot: SnapshotFirst}}
	return map[string]*Event{"update": &update, "delete": &del, "read-first": &read}, commit.Add(time.Second)
}

func goldenEncoder(schemas bool) (enc *Encoder, suffix string) {
	if schemas {
		suffix = "-schemas"
	}
	return NewEncoder(EncoderConfig{Name: "scoop", Database: "monolith", Version: "test", Schemas: schemas}, testTypes), suffix
}

func TestEnvelopeGolden(t *testing.T) {
	events, now := goldenEvents()
	for _, schemas := range []bool{false, true} {
		enc, suffix := goldenEncoder(schemas)
		for name, ev := range events {
			key, err := enc.Key(nil, ev)
			if err != nil {
				t.Fatal(err)
			}
			val, err := enc.Value(nil, ev, now)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+suffix+".key.json", key)
			golden(t, name+suffix+".value.json", val)
		}
	}
}

func TestKeyWithoutKeyColumns(t *testing.T) {
	tbl := &Table{Schema: "public", Name: "logs", Columns: []Column{{Name: "line", Type: 25}}}
	enc := NewEncoder(EncoderConfig{Name: "scoop"}, testTypes)
	_, err := enc.Key(nil, &Event{Op: OpCreate, Table: tbl, After: Row{txt("x")}})
	if err == nil || err.Error() != "table public.logs has no key column" {
		t.Fatalf("got %v", err)
	}
}

// source.sequence is Debezium's: a JSON array of two strings, the last
// committed LSN (null when the stream does not know it) and the change's LSN.
func TestSourceSequence(t *testing.T) {
	enc := NewEncoder(EncoderConfig{Name: "scoop", Database: "monolith", Version: "test"}, testTypes)
	for _, tc := range []struct {
		last, lsn uint64
		want      []*string
	}{
		{120000, 123456, []*string{ptr("120000"), ptr("123456")}},
		{0, 123456, []*string{nil, ptr("123456")}},
	} {
		ev := Event{Op: OpCreate, Table: testTable(), After: Row{txt("1")}, Source: Source{LSN: tc.lsn, LastCommitLSN: tc.last, CommitTime: time.Unix(1, 0)}}
		val, err := enc.Value(nil, &ev, time.Unix(2, 0))
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Source struct {
				Sequence  string `json:"sequence"`
				Connector string `json:"connector"`
			} `json:"source"`
		}
		if err := json.Unmarshal(val, &v); err != nil {
			t.Fatalf("%v\n%s", err, val)
		}
		var got []*string
		if err := json.Unmarshal([]byte(v.Source.Sequence), &got); err != nil {
			t.Fatalf("sequence %q is not a JSON array: %v", v.Source.Sequence, err)
		}
		if len(got) != 2 || !sameStr(got[0], tc.want[0]) || !sameStr(got[1], tc.want[1]) {
			t.Errorf("last commit %d, lsn %d: sequence %s", tc.last, tc.lsn, v.Source.Sequence)
		}
		if v.Source.Connector != "postgresql" {
			t.Errorf("connector %q", v.Source.Connector)
		}
	}
}

func ptr(s string) *string { return &s }

func sameStr(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// A truncate is Debezium's: op "t", before and after null, the source block
// naming the table, in the table's envelope schema.
func TestTruncateGolden(t *testing.T) {
	commit := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ev := Event{Op: OpTruncate, Table: testTable(), Source: Source{LSN: 123456, CommitLSN: 123999, LastCommitLSN: 120000, TxID: 789, CommitTime: commit, Order: 1, TableOrder: 1, KeyOrder: 1}}
	for _, schemas := range []bool{false, true} {
		enc, suffix := goldenEncoder(schemas)
		val, err := enc.Value(nil, &ev, commit.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "truncate"+suffix+".value.json", val)
	}
}

// epochDigits must agree with UnixMilli, UnixMicro and UnixNano for every
// time, the ones it formats once and the ones it formats each on its own.
func TestEpochDigits(t *testing.T) {
	times := []time.Time{time.Unix(0, 0), time.Unix(0, 999_999), time.Unix(0, 1_000_000), time.Unix(-1, 5),
		time.Date(2262, 4, 11, 23, 47, 16, 854775807, time.UTC), time.Date(2300, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 26, 8, 30, 0, 123456789, time.UTC)}
	r := rand.New(rand.NewPCG(7, 11))
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(20_000_000_000)-5_000_000_000, r.Int64N(1_000_000_000)))
	}
	// Years 1 to 9999, where UnixNano overflows and may wrap into range
	// (year 1385: -18446744073 s).
	times = append(times, time.Unix(-18446744073, 0), time.Unix(18446744073, 0))
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(253402300799+62135596800)-62135596800, r.Int64N(1_000_000_000)))
	}
	for _, tm := range times {
		var buf [20]byte
		ms, us, ns := epochDigits(&buf, tm)
		want := [3]string{strconv.FormatInt(tm.UnixMilli(), 10), strconv.FormatInt(tm.UnixMicro(), 10), strconv.FormatInt(tm.UnixNano(), 10)}
		if got := [3]string{string(ms), string(us), string(ns)}; got != want {
			t.Fatalf("%v: got %q, want %q", tm, got, want)
		}
	}
}

// The encoder keeps one cache entry per table, however often the table's
// relation comes again (PostgreSQL sends it after every VACUUM or ANALYZE
// of the table, each time a new *Table), and writes the newest version.
func TestEncoderCacheOnePerTable(t *testing.T) {
	for _, schemas := range []bool{false, true} {
		enc := NewEncoder(EncoderConfig{Name: "scoop", Database: "db", Version: "v", Schemas: schemas}, TypeMap{23: {OID: 23, Name: "int4", Kind: 'b', Category: 'N'}})
		var value []byte
		for i := range 1000 {
			tbl := &Table{OID: 42, Schema: "public", Name: "t", Columns: []Column{{Name: "id", Type: 23, Key: true}, {Name: fmt.Sprintf("c%d", i), Type: 23}}}
			ev := &Event{Op: OpCreate, Table: tbl, After: Row{{Kind: Text, Data: []byte("1")}, {Kind: Text, Data: []byte("2")}}}
			if _, err := enc.Key(nil, ev); err != nil {
				t.Fatal(err)
			}
			var err error
			if value, err = enc.Value(nil, ev, time.Unix(1, 0)); err != nil {
				t.Fatal(err)
			}
		}
		if len(enc.tables) != 1 {
			t.Fatalf("schemas %v: %d cache entries for one table sent 1,000 times", schemas, len(enc.tables))
		}
		if !bytes.Contains(value, []byte(`"c999":2`)) || bytes.Contains(value, []byte(`"c998"`)) {
			t.Fatalf("schemas %v: the last version's columns not written: %s", schemas, value)
		}
	}
}
