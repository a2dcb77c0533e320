package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// TestHeartbeatRecords: with SCOOP_HEARTBEAT_RECORDS=true scoop writes
// Debezium's heartbeat records, keyed by the topic prefix, each carrying the
// time of a heartbeat that came back through the slot.
func TestHeartbeatRecords(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table := testenv.Name("hb")
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY)`, schema.QuoteIdent(table)))
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: hb\n    source: public.%s\n    store: accounts\n", table))
	d := startProc(t, append(e.env, "SCOOP_HEARTBEAT_RECORDS=true"))
	started := time.Now()
	msgs := testenv.ReadTopic(t, "__debezium-heartbeat."+e.prefix, 3, 60*time.Second)
	if len(msgs) < 3 {
		t.Fatalf("%d heartbeat records, want 3\n%s", len(msgs), tail(d.logs(), 3000))
	}
	var last int64
	for _, m := range msgs {
		if want := fmt.Sprintf(`{"serverName":%q}`, e.prefix); string(m.Key) != want {
			t.Fatalf("key %s, want %s", m.Key, want)
		}
		var v map[string]int64
		if err := json.Unmarshal(m.Value, &v); err != nil || len(v) != 1 {
			t.Fatalf("value %s, want {\"ts_ms\": <time>} (%v)", m.Value, err)
		}
		at := time.UnixMilli(v["ts_ms"])
		if at.Before(started.Add(-time.Minute)) || at.After(time.Now().Add(time.Minute)) || v["ts_ms"] <= last {
			t.Fatalf("ts_ms %d (%s): not a new heartbeat since the start at %s (previous %d)", v["ts_ms"], at, started, last)
		}
		last = v["ts_ms"]
	}
}
