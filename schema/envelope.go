package schema

import (
	"encoding/json"
	"time"
)

// Members of the change-event envelope that both the encoder (event.go,
// connect.go) and the decoders (decode.go, scan.go) name. The standard
// decoder's struct tags repeat them (Go tags cannot name a constant);
// TestEnvelopeTagsMatchMembers keeps the two in step.
const (
	memberBefore      = "before"
	memberAfter       = "after"
	memberSource      = "source"
	memberOp          = "op"
	memberTsMs        = "ts_ms" // in source: the commit time in ms
	memberTsUs        = "ts_us" // in source: the commit time in µs
	memberLSN         = "lsn"
	memberCommitLSN   = "commit_lsn"
	memberTransaction = "transaction"
	memberTotalOrder  = "total_order"
	memberKeyOrder    = "key_order"
	memberUnchanged   = "unchanged"
	// Kafka Connect's wrapping of key and value.
	memberSchema  = "schema"
	memberPayload = "payload"
)

// Change is a change event as a sink reads it back from the envelope: the
// key, the row after the change and the change's position at the source.
type Change struct {
	Op         Op
	Key        map[string]json.RawMessage
	After      map[string]json.RawMessage // nil for deletes and truncates
	Unchanged  map[string]bool            // TOAST columns to leave as they are
	CommitTime time.Time                  // source commit time (µs precision)
	LSN        uint64
	CommitLSN  uint64 // commit LSN of the source transaction (0 for snapshot rows)
	Order      uint64 // transaction.total_order (0 for snapshot rows)
	KeyOrder   uint64 // transaction.key_order (0 when the producer did not say)
}
