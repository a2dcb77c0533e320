package schema

import (
	"encoding/json"
	"testing"
	"time"
)

// Heartbeat records are Debezium's, with and without schemas (the expected
// text is Debezium's heartbeat record as Kafka Connect's JsonConverter
// writes it).
func TestHeartbeatRecord(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		schemas    bool
		key, value string
	}{
		{false, `{"serverName":"scoop"}`, `{"ts_ms":1795608000000}`},
		{true,
			`{"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"serverName"}],"optional":false,"name":"io.debezium.connector.common.ServerNameKey","version":1},"payload":{"serverName":"scoop"}}`,
			`{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat","version":1},"payload":{"ts_ms":1795608000000}}`},
	} {
		enc := NewEncoder(EncoderConfig{Name: "scoop", Schemas: tc.schemas}, testTypes)
		key, value := enc.Heartbeat(at)
		if !json.Valid(key) || !json.Valid(value) {
			t.Fatalf("invalid JSON: %s %s", key, value)
		}
		if string(key) != tc.key || string(value) != tc.value {
			t.Errorf("schemas %v:\nkey   %s\nwant  %s\nvalue %s\nwant  %s", tc.schemas, key, tc.key, value, tc.value)
		}
	}
	if got := HeartbeatTopic("scoop"); got != "__debezium-heartbeat.scoop" {
		t.Errorf("topic %q", got)
	}
}
