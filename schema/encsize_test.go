package schema

import "testing"

// Buffers of KeyCap and ValueCap hold the golden events without growing.
func TestEncodeCaps(t *testing.T) {
	events, now := goldenEvents()
	for _, schemas := range []bool{false, true} {
		enc, _ := goldenEncoder(schemas)
		for name, ev := range events {
			kc, vc := enc.KeyCap(ev.Table), enc.ValueCap(ev.Table)
			key, err := enc.Key(make([]byte, 0, kc), ev)
			if err != nil {
				t.Fatal(err)
			}
			value, err := enc.Value(make([]byte, 0, vc), ev, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(key) > kc || len(value) > vc {
				t.Errorf("%s (schemas %v): key %d bytes in %d, value %d bytes in %d", name, schemas, len(key), kc, len(value), vc)
			}
		}
	}
}

// BenchmarkEncodeChange measures the source's encoding of one event, as
// the stream does it (buffers of KeyCap and ValueCap), without and with
// Kafka Connect schemas (SCOOP_EVENT_SCHEMAS).
func BenchmarkEncodeChange(b *testing.B) {
	events, now := goldenEvents()
	ev := events["update"]
	for _, schemas := range []bool{false, true} {
		enc, _ := goldenEncoder(schemas)
		name := "plain"
		if schemas {
			name = "schemas"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := enc.Key(make([]byte, 0, enc.KeyCap(ev.Table)), ev); err != nil {
					b.Fatal(err)
				}
				if _, err := enc.Value(make([]byte, 0, enc.ValueCap(ev.Table)), ev, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
