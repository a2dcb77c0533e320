package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The one-pass decoder and encoding/json agree on every event they both take.
func TestDecodeFastMatchesStandard(t *testing.T) {
	events := []struct{ key, val string }{
		{`{"id":1}`, `{"before":null,"after":{"id":1,"a":"x\"y","b":[1,[2,{"c":"}"}]],"c":null,"d":{"e":"{["}},"source":{"version":"v","ts_ms":5,"ts_us":5001,"lsn":77,"commit_lsn":90,"txId":3,"xmin":null},"op":"c","ts_ms":9,"transaction":null}`},
		{`{"id":1,"k\u00e9":"x"}`, `{"after":{"id":1,"k\u00e9":"x","big\"q":true},"op":"u","source":{"ts_ms":1},"unchanged":["big\"q"]}`},
		{`{"id":2}`, ` { "before" : {"id":2} , "after" : null , "op" : "d" , "source" : { "ts_ms" : 1 } } `},
		{``, `{"before":null,"after":null,"op":"t","source":{"ts_ms":1,"lsn":5}}`},
		{`{"id":3}`, `{"after":{"id":3},"op":"c","source":{"ts_ms":1,"lsn":5,"commit_lsn":9},"transaction":{"id":"7:9","total_order":4,"data_collection_order":2,"key_order":3}}`},
		// Kafka Connect wrapping (SCOOP_EVENT_SCHEMAS): in either order, a
		// schema holding strings with brackets and quotes, a later payload
		// member winning, members other than schema and payload ignored.
		{`{"schema":{"type":"struct","fields":[{"field":"id","type":"int64"}]},"payload":{"id":4}}`,
			`{"schema":{"type":"struct","name":"p.public.t.Envelope","fields":[{"field":"after","name":"a}\"]{","type":"struct"}]},"payload":{"after":{"id":4,"a":"x"},"op":"c","source":{"ts_ms":1,"ts_us":1001,"lsn":5,"commit_lsn":9},"transaction":{"total_order":2,"key_order":1}}}`},
		{`{"payload":{"id":5},"schema":null}`, ` { "payload" : {"op":"x"} , "op" : "c" , "schema" : { } , "PAYLOAD" : { "after" : {"id":5} , "op" : "u" , "unchanged" : ["b"] , "source" : { "ts_ms" : 2 } } } `},
		{`{"schema":{},"payload":{"id":6}}`, `{"schema":{"optional":false},"payload":{"before":{"id":6},"after":null,"op":"d","source":{"ts_ms":3,"lsn":8}}}`},
		{``, `{"schema":{},"payload":{"before":null,"after":null,"op":"t","source":{"ts_ms":1,"lsn":5}}}`},
		// A key wrapped alone, and a member that only folds to schema
		// (no wrapping: encoding/json ignores it).
		{`{"schema":{"type":"struct"},"payload":{"id":7}}`, `{"after":{"id":7},"op":"c","source":{"ts_ms":1},"Schema":{"x":1},"payload":{"op":"d"}}`},
		// Names that fold to a known one with non-ASCII letters, longer in
		// bytes (the Kelvin sign and the long s), and ASCII names in other
		// cases.
		{`{"id":8}`, `{"after":{"id":8},"OP":"c","ſource":{"TS_MS":4,"L` + "\u017f" + `N":6},"transaction":{"Key_order":5,"Total_Order":3}}`},
	}
	for _, e := range events {
		var key []byte
		if e.key != "" {
			key = []byte(e.key)
		}
		fast, err := decodeFast(key, []byte(e.val))
		if err != nil {
			t.Fatalf("fast path refused %s: %v", e.val, err)
		}
		std, ok, err := decodeStandard(key, []byte(e.val))
		if err != nil || !ok {
			t.Fatalf("standard: %v", err)
		}
		a, _ := json.Marshal(fast)
		b, _ := json.Marshal(std)
		if string(a) != string(b) {
			t.Fatalf("decoders differ on %s:\nfast %s\nstd  %s", e.val, a, b)
		}
	}
}

func FuzzDecodeChange(f *testing.F) {
	f.Add([]byte(`{"id":1}`), []byte(`{"after":{"id":1,"a":"x"},"op":"c","source":{"ts_ms":1}}`))
	f.Add([]byte(`{"id":1}`), []byte(`{"after":{"id":1,"a":[1,{"b":"]"}]},"op":"u","source":{"ts_us":1,"lsn":3},"unchanged":["z"]}`))
	f.Add([]byte(`{"schema":{"type":"struct"},"payload":{"id":1}}`), []byte(`{"schema":{"type":"struct","fields":[{"field":"op"}]},"payload":{"after":{"id":1},"op":"c","source":{"ts_ms":1}}}`))
	f.Add([]byte(`{"payload":{"id":1},"schema":{}}`), []byte(`{"payload":{"after":{"id":1},"op":"u","source":{"ts_us":1}},"PayLoad":{"after":{"id":2},"op":"c","source":{}},"schema":{"a":"}"}}`))
	f.Fuzz(func(t *testing.T, key, val []byte) {
		fast, err := decodeFast(key, val)
		if err != nil || validChange(&fast) != nil {
			return
		}
		std, ok, err := decodeStandard(key, val)
		if err != nil || !ok {
			return // the fast path may accept a layout the standard decoder refuses
		}
		a, _ := json.Marshal(fast)
		b, _ := json.Marshal(std)
		if string(a) != string(b) {
			t.Fatalf("decoders differ on %q %q:\nfast %s\nstd  %s", key, val, a, b)
		}
	})
}

// want is what decoding ev's envelope must give back: the encoder's input,
// as JSON.
func want(t *testing.T, ev *Event) Change {
	t.Helper()
	w := Change{Op: ev.Op, CommitTime: ev.Source.CommitTime, LSN: ev.Source.LSN, CommitLSN: ev.Source.CommitLSN, Order: ev.Source.Order, KeyOrder: ev.Source.KeyOrder}
	row := func(r Row, keyOnly bool) map[string]json.RawMessage {
		m := map[string]json.RawMessage{}
		for i, c := range ev.Table.Columns {
			v := valueAt(r, i)
			if keyOnly && !c.Key || v.Kind == Unchanged {
				continue
			}
			m[c.Name] = json.RawMessage("null")
			if v.Kind == Text {
				b, err := AppendJSON(nil, testTypes, c.Type, v.Data)
				if err != nil {
					t.Fatal(err)
				}
				m[c.Name] = b
			}
		}
		return m
	}
	if ev.Op == OpDelete {
		w.Key = row(ev.Before, true)
		return w
	}
	w.Key = row(ev.After, true)
	w.After = row(ev.After, false)
	for i, v := range ev.After {
		if v.Kind == Unchanged {
			if w.Unchanged == nil {
				w.Unchanged = map[string]bool{}
			}
			w.Unchanged[ev.Table.Columns[i].Name] = true
		}
	}
	return w
}

// canonical compacts raw values so that indented and compact JSON compare equal.
func canonical(c Change) string {
	compact := func(m map[string]json.RawMessage) {
		for k, v := range m {
			var b bytes.Buffer
			json.Compact(&b, v)
			m[k] = b.Bytes()
		}
	}
	compact(c.Key)
	compact(c.After)
	c.CommitTime = c.CommitTime.UTC()
	b, _ := json.Marshal(c)
	return fmt.Sprintf("%s at %s", b, c.CommitTime.Format(time.RFC3339Nano))
}

// The decoders give back every field the encoder was given, from the golden
// files and from fresh output, with and without Kafka Connect schemas.
func TestDecodeGolden(t *testing.T) {
	events, now := goldenEvents()
	snapshot := &Event{Op: OpRead, Table: testTable(), After: Row{txt("2"), txt("b@example.com"), {Kind: Null}, txt("-1")},
		Source: Source{LSN: 5000, CommitTime: time.Date(2026, 11, 25, 11, 0, 0, 123456000, time.UTC), Snapshot: SnapshotTrue}}
	for _, schemas := range []bool{false, true} {
		enc, suffix := goldenEncoder(schemas)
		for name, ev := range map[string]*Event{"update": events["update"], "delete": events["delete"], "snapshot": snapshot} {
			type input struct {
				what       string
				key, value []byte
			}
			var inputs []input
			if name != "snapshot" {
				key, err := os.ReadFile(filepath.Join("..", "testdata", "golden", name+suffix+".key.json"))
				if err != nil {
					t.Fatal(err)
				}
				value, err := os.ReadFile(filepath.Join("..", "testdata", "golden", name+suffix+".value.json"))
				if err != nil {
					t.Fatal(err)
				}
				inputs = append(inputs, input{"golden " + name + suffix, key, value})
			}
			key, err := enc.Key(nil, ev)
			if err != nil {
				t.Fatal(err)
			}
			value, err := enc.Value(nil, ev, now)
			if err != nil {
				t.Fatal(err)
			}
			inputs = append(inputs, input{"encoded " + name + suffix, key, value})
			w := canonical(want(t, ev))
			for _, in := range inputs {
				c, ok, err := DecodeChange(in.key, in.value)
				if err != nil || !ok {
					t.Fatalf("%s: %v %v", in.what, ok, err)
				}
				if got := canonical(c); got != w {
					t.Errorf("%s decoded\n%s\nwant\n%s", in.what, got, w)
				}
				std, _, err := decodeStandard(in.key, in.value)
				if got := canonical(std); err != nil || got != w {
					t.Errorf("%s: standard decoder: %v\n%s\nwant\n%s", in.what, err, got, w)
				}
				// scoop's own layout, with schemas too, must take the
				// one-pass path.
				fast, err := decodeFast(in.key, in.value)
				if got := canonical(fast); err != nil || got != w {
					t.Errorf("%s: one-pass decoder: %v\n%s\nwant\n%s", in.what, err, got, w)
				}
			}
		}
	}
}

// The standard decoder's struct tags name only the envelope's members.
func TestEnvelopeTagsMatchMembers(t *testing.T) {
	members := map[string]bool{}
	for _, m := range knownNames {
		members[m] = true
	}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if tag := f.Tag.Get("json"); !members[tag] {
				t.Errorf("envelope field %s has tag %q, not a member constant", f.Name, tag)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeOf(envelope{}))
}

// BenchmarkDecodeChange measures a sink's decoding of one event, as scoop
// encodes it without and with Kafka Connect schemas (SCOOP_EVENT_SCHEMAS).
func BenchmarkDecodeChange(b *testing.B) {
	events, now := goldenEvents()
	for _, schemas := range []bool{false, true} {
		enc, suffix := goldenEncoder(schemas)
		key, err := enc.Key(nil, events["update"])
		if err != nil {
			b.Fatal(err)
		}
		value, err := enc.Value(nil, events["update"], now)
		if err != nil {
			b.Fatal(err)
		}
		name := "plain"
		if suffix != "" {
			name = "schemas"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(key) + len(value)))
			for b.Loop() {
				if _, ok, err := DecodeChange(key, value); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// Kafka Connect wrapping that is not exactly scoop's layout leaves the
// one-comparison path and is read as encoding/json reads it.
func TestDecodeConnectLayouts(t *testing.T) {
	schema := `{"type":"struct","optional":false,"name":"p.public.layouts.Envelope","fields":[{"type":"string","field":"op"}]}`
	keySchema := `{"type":"struct","optional":false,"name":"p.public.layouts.Key","fields":[{"type":"int64","field":"id"}]}`
	key := `{"schema":` + keySchema + `,"payload":{"id":1}}`
	for _, val := range []string{
		// scoop's layout, twice: the second time its schema is a kept one.
		`{"schema":` + schema + `,"payload":{"after":{"id":1},"op":"c","source":{"ts_ms":1}}}`,
		`{"schema":` + schema + `,"payload":{"after":{"id":1},"op":"c","source":{"ts_ms":1}}}`,
		// A kept schema followed by a member that only folds to payload.
		`{"schema":` + schema + `,"PAYLOAD":{"after":{"id":1},"op":"c","source":{"ts_ms":1}}}`,
		// A later payload member wins.
		`{"schema":` + schema + `,"payload":{"after":{"id":2},"op":"c","source":{"ts_ms":1}},"payload":{"after":{"id":1},"op":"u","source":{"ts_ms":2}}}`,
		// Spacing, and a schema that starts like the kept one.
		`{"schema":` + schema[:len(schema)-1] + `,"doc":"x"}` + `,"payload": {"after":{"id":1},"op":"c","source":{"ts_ms":1}} }`,
		`{"schema": ` + schema + ` ,"payload":{"after":{"id":1},"op":"c","source":{"ts_ms":1}}}`,
	} {
		got, ok, err := DecodeChange([]byte(key), []byte(val))
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", val, ok, err)
		}
		std, _, err := decodeStandard([]byte(key), []byte(val))
		if err != nil {
			t.Fatalf("standard: %v", err)
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(std)
		if string(a) != string(b) {
			t.Fatalf("decoders differ on %s:\ngot %s\nstd %s", val, a, b)
		}
	}
	kept := map[string]bool{}
	for _, s := range *schemaCache.Load() {
		kept[string(s)] = true
	}
	if !kept[schema] || !kept[keySchema] {
		t.Fatalf("the key and value schemas are not kept: %v", kept)
	}
	// Bytes after the payload: refused with encoding/json's words.
	_, _, err := DecodeChange([]byte(key), []byte(`{"schema":`+schema+`,"payload":{"after":{"id":1},"op":"c","source":{"ts_ms":1}}}}`))
	if err == nil || err.Error() != `decode event value: invalid character '}' after top-level value` {
		t.Fatalf("got %v", err)
	}
	_, _, err = DecodeChange([]byte(`{"schema":`+keySchema+`,"payload":{"id":1}},`), []byte(`{"schema":`+schema+`,"payload":{"after":{"id":1},"op":"c","source":{"ts_ms":1}}}`))
	if err == nil || err.Error() != `decode event key: invalid character ',' after top-level value` {
		t.Fatalf("got %v", err)
	}
}

// At most schemaCacheSize schemas are kept, the newest.
func TestKeptSchemasBounded(t *testing.T) {
	var last string
	for i := range schemaCacheSize + 8 {
		last = fmt.Sprintf(`{"type":"struct","optional":false,"name":"p.public.bounded%03d.Envelope","fields":[]}`, i)
		val := `{"schema":` + last + `,"payload":{"after":{"id":1},"op":"c","source":{"ts_ms":1}}}`
		if _, ok, err := DecodeChange([]byte(`{"id":1}`), []byte(val)); err != nil || !ok {
			t.Fatalf("%s: %v %v", val, ok, err)
		}
	}
	kept := *schemaCache.Load()
	if len(kept) != schemaCacheSize || string(kept[len(kept)-1]) != last {
		t.Fatalf("kept %d schemas, the last %s", len(kept), kept[len(kept)-1])
	}
}
