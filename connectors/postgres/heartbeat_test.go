package postgres

import (
	"testing"
	"time"
)

// The heartbeat's content is the source's now()::text in any time zone.
func TestHeartbeatTime(t *testing.T) {
	for in, want := range map[string]string{
		"2026-11-26 00:48:28.123456+00":  "2026-11-26T00:48:28.123456Z",
		"2026-11-26 06:18:28.5+05:30":    "2026-11-26T00:48:28.5Z",
		"2026-11-25 20:48:28-04":         "2026-11-26T00:48:28Z",
		"2026-11-26 00:48:28.1+00:00:00": "2026-11-26T00:48:28.1Z",
	} {
		got, ok := heartbeatTime([]byte(in))
		if !ok || got.UTC().Format(time.RFC3339Nano) != want {
			t.Errorf("heartbeatTime(%q) = %v, %v; want %s", in, got.UTC(), ok, want)
		}
	}
	if _, ok := heartbeatTime([]byte("not a time")); ok {
		t.Error("heartbeatTime accepted text that is not a time")
	}
}
