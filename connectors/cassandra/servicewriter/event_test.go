package servicewriter

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// testTable has every supported type and a two-column key.
func testTable(t *testing.T) *table {
	t.Helper()
	tab, err := newTable("shop", "orders", []column{
		{name: "tenant", typ: "text", key: true},
		{name: "id", typ: "int", key: true},
		{name: "at", typ: "timestamp"},
		{name: "big", typ: "bigint"},
		{name: "note", typ: "text"},
		{name: "ok", typ: "boolean"},
		{name: "price", typ: "decimal"},
		{name: "ref", typ: "uuid"},
		{name: "score", typ: "double"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func fullRow() map[string]any {
	return map[string]any{
		"tenant": "acme \"west\"",
		"id":     int32(7),
		"at":     time.Date(2024, 5, 1, 10, 0, 0, 250_000_000, time.FixedZone("CEST", 2*3600)),
		"big":    int64(math.MaxInt64),
		"note":   nil,
		"ok":     true,
		"price":  "12.50",
		"ref":    "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
		"score":  0.1,
	}
}

// TestEventRoundTrip encodes with the writer's encoder and decodes with
// scoop's decoder: what scoop's reverse flow reads is what was written,
// and the Cassandra sink's write time (commit time + key_order - 1) is the
// writer's timestamp exactly.
func TestEventRoundTrip(t *testing.T) {
	tab := testTable(t)
	const ts = int64(1714557600123457) // µs, not a whole millisecond
	cells, err := tab.cells(fullRow(), false)
	if err != nil {
		t.Fatal(err)
	}
	key, value := tab.event(schema.OpUpdate, cells, ts, "scoop", time.Now())
	c, ok, err := schema.DecodeChange(key, value)
	if err != nil || !ok {
		t.Fatalf("decode: ok=%v err=%v\nkey %s\nvalue %s", ok, err, key, value)
	}
	if c.Op != schema.OpUpdate {
		t.Errorf("op %c, want u", c.Op)
	}
	if got := c.CommitTime.UnixMicro(); got != ts {
		t.Errorf("commit time %d µs, want %d", got, ts)
	}
	if c.KeyOrder != 1 || c.Order != 1 {
		t.Errorf("key_order %d total_order %d, want 1 and 1", c.KeyOrder, c.Order)
	}
	if wt := c.CommitTime.UnixMicro() + int64(max(c.KeyOrder, 1)) - 1; wt != ts {
		t.Errorf("scoop's Cassandra sink would write at %d, the writer at %d", wt, ts)
	}
	if string(key) != `{"tenant":"acme \"west\"","id":7}` {
		t.Errorf("key %s", key)
	}
	wantKey := map[string]string{"tenant": `"acme \"west\""`, "id": `7`}
	if len(c.Key) != len(wantKey) {
		t.Errorf("key %v", c.Key)
	}
	for k, v := range wantKey {
		if string(c.Key[k]) != v {
			t.Errorf("key %s = %s, want %s", k, c.Key[k], v)
		}
	}
	wantAfter := map[string]string{
		"tenant": `"acme \"west\""`, "id": `7`,
		"at":    `"2024-05-01T08:00:00.25Z"`,
		"big":   `9223372036854775807`,
		"note":  `null`,
		"ok":    `true`,
		"price": `"12.50"`,
		"ref":   `"6ba7b810-9dad-11d1-80b4-00c04fd430c8"`,
		"score": `0.1`,
	}
	if len(c.After) != len(wantAfter) {
		t.Errorf("after has %d columns, want %d: %s", len(c.After), len(wantAfter), value)
	}
	for k, v := range wantAfter {
		if string(c.After[k]) != v {
			t.Errorf("after %s = %s, want %s", k, c.After[k], v)
		}
	}
	// The standard decoder (the path of the errors' wording) reads it alike.
	var env struct {
		Source struct {
			Connector string `json:"connector"`
			DB        string `json:"db"`
			Schema    string `json:"schema"`
			Table     string `json:"table"`
			TsMs      int64  `json:"ts_ms"`
		} `json:"source"`
		Before json.RawMessage `json:"before"`
	}
	if err := json.Unmarshal(value, &env); err != nil {
		t.Fatalf("value is not JSON: %v\n%s", err, value)
	}
	if env.Source.Connector != Connector || env.Source.DB != "shop" || env.Source.Schema != "shop" || env.Source.Table != "orders" || env.Source.TsMs != ts/1000 || string(env.Before) != "null" {
		t.Errorf("source block %+v before %s", env.Source, env.Before)
	}

	// A delete: key only, no after.
	kcells, err := tab.cells(map[string]any{"tenant": "acme \"west\"", "id": 7}, true)
	if err != nil {
		t.Fatal(err)
	}
	dkey, dvalue := tab.event(schema.OpDelete, kcells, ts+1, "scoop", time.Now())
	d, ok, err := schema.DecodeChange(dkey, dvalue)
	if err != nil || !ok {
		t.Fatalf("decode delete: %v\n%s", err, dvalue)
	}
	if d.Op != schema.OpDelete || d.After != nil || d.CommitTime.UnixMicro() != ts+1 || d.KeyOrder != 1 || string(dkey) != string(key) {
		t.Errorf("delete decoded as %+v, key %s", d, dkey)
	}
	// And as scoop's sinks see it.
	pc := pipeline.Change{Op: d.Op, Key: d.Key, CommitTime: d.CommitTime, KeyOrder: d.KeyOrder}
	if pc.CommitTime.UnixMicro()+int64(pc.KeyOrder)-1 != ts+1 {
		t.Errorf("delete write time moved")
	}
}

// TestTimestampsStrictlyIncrease: a clock that stands still or goes back
// still gives strictly increasing timestamps.
func TestTimestampsStrictlyIncrease(t *testing.T) {
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	ticks := []time.Duration{0, 0, 0, -time.Second, 5 * time.Microsecond, 5 * time.Microsecond, 10 * time.Microsecond}
	i := 0
	w := &Writer{cfg: Config{Clock: func() time.Time { d := ticks[i%len(ticks)]; i++; return base.Add(d) }}}
	want := []int64{0, 1, 2, 3, 5, 6, 10}
	for n, off := range want {
		if got := w.nextTimestamp() - base.UnixMicro(); got != off {
			t.Fatalf("timestamp %d is base+%dµs, want base+%dµs", n, got, off)
		}
	}
}

// TestRefusedValues: each value a CQL type cannot take is refused with an
// error naming the column, its type and the fix.
func TestRefusedValues(t *testing.T) {
	tab := testTable(t)
	cases := []struct {
		col  string
		v    any
		want string
	}{
		{"id", "7", `column "id" (int): a value of Go type string cannot be written (give an integer)`},
		{"id", int64(math.MaxInt32) + 1, `column "id" (int): 2147483648 is out of the range of a CQL int`},
		{"big", uint64(math.MaxUint64), `column "big" (bigint): 18446744073709551615 is out of the range of a CQL bigint`},
		{"big", 1.5, `column "big" (bigint): a value of Go type float64 cannot be written (give an integer)`},
		{"score", 1, `column "score" (double): a value of Go type int cannot be written (give a float64)`},
		{"ok", "true", `column "ok" (boolean): a value of Go type string cannot be written (give a bool)`},
		{"price", "12,50", `column "price" (decimal): "12,50" is not a decimal number (e.g. "12.50")`},
		{"price", 12.5, `column "price" (decimal): a value of Go type float64 cannot be written (give a *inf.Dec or a decimal string)`},
		{"at", "2024-05-01T10:00:00Z", `column "at" (timestamp): a value of Go type string cannot be written (give a time.Time)`},
		{"at", time.Date(2024, 5, 1, 10, 0, 0, 1000, time.UTC), `column "at" (timestamp): 2024-05-01T10:00:00.000001Z has a fraction of a millisecond, which a CQL timestamp does not keep (give t.Truncate(time.Millisecond))`},
		{"at", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), `column "at" (timestamp): 10000-01-01 00:00:00 +0000 UTC is outside the years 1 to 9999`},
		{"ref", "not-a-uuid", `column "ref" (uuid): "not-a-uuid" is not a UUID`},
		{"ref", 42, `column "ref" (uuid): a value of Go type int cannot be written (give a gocql.UUID, a [16]byte or a UUID string)`},
		{"note", "caf\xe9", `column "note" (text): the string is not valid UTF-8`},
		{"note", []byte("x"), `column "note" (text): a value of Go type []uint8 cannot be written (give a string)`},
	}
	for _, c := range cases {
		row := fullRow()
		row[c.col] = c.v
		_, err := tab.cells(row, false)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s = %#v: got error %v\nwant %s", c.col, c.v, err, c.want)
		}
	}
}

// TestAcceptedValues: the other Go forms of each type encode as scoop's
// events do.
func TestAcceptedValues(t *testing.T) {
	u := gocql.TimeUUID()
	cases := []struct {
		typ  string
		v    any
		json string
	}{
		{"int", uint8(200), `200`},
		{"int", -5, `-5`},
		{"bigint", uint32(math.MaxUint32), `4294967295`},
		{"double", float32(0.5), `0.5`},
		{"double", math.NaN(), `"NaN"`},
		{"double", math.Inf(-1), `"-Infinity"`},
		{"decimal", inf.NewDec(1250, 2), `"12.50"`},
		{"decimal", (*inf.Dec)(nil), `null`},
		{"uuid", u, `"` + u.String() + `"`},
		{"uuid", [16]byte(u), `"` + u.String() + `"`},
		{"timestamp", time.UnixMilli(-1).UTC(), `"1969-12-31T23:59:59.999Z"`},
		{"text", "<&>", `"\u003c\u0026\u003e"`},
	}
	for _, c := range cases {
		got, err := convert(c.typ, c.v)
		if err != nil || string(got.json) != c.json {
			t.Errorf("%s %#v: %s, %v; want %s", c.typ, c.v, got.json, err, c.json)
		}
	}
}

// TestRefusedRows: a row must be the whole row, a key exactly the key.
func TestRefusedRows(t *testing.T) {
	tab := testTable(t)
	without := func(m map[string]any, col string) map[string]any { delete(m, col); return m }
	with := func(m map[string]any, col string, v any) map[string]any { m[col] = v; return m }
	cases := []struct {
		name    string
		row     map[string]any
		keyOnly bool
		want    string
	}{
		{"upsert missing key", without(fullRow(), "id"), false, `key column "id" is missing (the key of shop.orders is ("tenant", "id"))`},
		{"upsert missing column", without(fullRow(), "note"), false, `column "note" is missing: Upsert writes the whole row (give nil for NULL)`},
		{"upsert unknown column", with(fullRow(), "colour", "red"), false, `column "colour" is not a column of shop.orders`},
		{"upsert nil key", with(fullRow(), "tenant", nil), false, `key column "tenant" is nil`},
		{"delete missing key", map[string]any{"tenant": "a"}, true, `key column "id" is missing (the key of shop.orders is ("tenant", "id"))`},
		{"delete non-key column", map[string]any{"tenant": "a", "id": 1, "note": "x"}, true, `column "note" is not a key column of shop.orders (a delete names the key only: ("tenant", "id"))`},
	}
	for _, c := range cases {
		_, err := tab.cells(c.row, c.keyOnly)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v\nwant %s", c.name, err, c.want)
		}
	}
}

func TestRefusedTables(t *testing.T) {
	_, err := newTable("shop", "orders", []column{{name: "id", typ: "int", key: true}, {name: "tags", typ: "list<text>"}})
	want := `table shop.orders: column "tags" has CQL type list<text>, which the service writer does not support (supported: text, int, bigint, double, boolean, decimal, timestamp, uuid)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestConfigValidate(t *testing.T) {
	var c Config
	err := c.Validate()
	want := `servicewriter: Brokers is empty (give Kafka's bootstrap addresses, e.g. 127.0.0.1:9092); TopicPrefix is empty (give scoop's SCOOP_TOPIC_PREFIX, "scoop" by default); Mapping is empty (give the name of the scoop mapping with direction: both); Session is nil (give the service's gocql session); Keyspace and Table must both be set`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	c = Config{Brokers: []string{"b:9092"}, TopicPrefix: "scoop", Mapping: "my orders", Session: &gocql.Session{}, Keyspace: "k", Table: "t", Partitions: -1}
	err = c.Validate()
	want = `servicewriter: TopicPrefix and Mapping make the topic name "scoop.reverse.my orders", which Kafka refuses (letters, digits, '.', '_', '-'; at most 249); Partitions is negative (0 means 3, scoop's default)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	c.Mapping, c.Partitions = "orders", 0
	if err := c.Validate(); err != nil || c.Partitions != 3 || c.ReplicationFactor != -1 || c.Clock == nil {
		t.Errorf("defaults: %v %+v", err, c)
	}
	if !strings.HasSuffix(pipeline.ReverseTopic(c.TopicPrefix, &pipeline.Mapping{Name: c.Mapping}), ".reverse.orders") {
		t.Error("topic name")
	}
}
