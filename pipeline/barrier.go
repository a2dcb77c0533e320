package pipeline

import (
	"context"
	"fmt"
)

// PartitionsHeader is the Kafka header of a truncate marker: the source
// writes a truncate once to every partition of the topic, each copy with
// this header holding the number of partitions (see docs/events.md).
const PartitionsHeader = "scoop.partitions"

// BarrierID identifies one truncate for one consumer group: every
// partition's marker of a truncate carries the same source position.
type BarrierID struct {
	Group, Topic   string
	CommitLSN, LSN uint64
	Partitions     int // how many markers the truncate has
}

func (id BarrierID) String() string {
	return fmt.Sprintf("%s/%s@%X/%X", id.Group, id.Topic, id.CommitLSN, id.LSN)
}

// BarrierState is what the instances consuming a group know of a truncate.
type BarrierState struct {
	Arrived int  // distinct partitions whose marker a consumer reached
	Done    bool // the store was truncated; markers are now skipped
}

// TruncateBarriers is the state that the consumers of one group share,
// possibly across instances, to order a truncate against every partition:
// a consumer that reaches a partition's marker applies nothing of that
// partition after it until the truncate is done, and exactly one of them
// truncates the store once every partition's marker was reached.
type TruncateBarriers interface {
	// Arrive records that partition's marker, at offset, was reached
	// (idempotent).
	Arrive(ctx context.Context, id BarrierID, partition int, offset int64) (BarrierState, error)
	// State reads the barrier (zero when nobody arrived yet).
	State(ctx context.Context, id BarrierID) (BarrierState, error)
	// Complete runs truncate and marks the barrier done if every partition
	// arrived and it is not done yet, serialized among all instances; a
	// failure before the barrier is marked done leaves it to be run again.
	Complete(ctx context.Context, id BarrierID, truncate func(context.Context) error) (BarrierState, error)
	// Truncated reads what the done barriers of the group and topic tell
	// a consumer reading the topic again (see Truncated).
	Truncated(ctx context.Context, group, topic string) (Truncated, error)
}

// Truncated is what is known of the done truncates of a group and topic.
// A record is wiped (applied before a truncate and removed by it, so a
// consumer that reads it again must skip it) when it lies below its
// partition's last done marker (the commit of its offset was lost), or when
// its source position precedes the last done truncate (the source published
// it again after a crash, after the marker).
type Truncated struct {
	Offsets        map[int]int64 // per partition, the offset of the last done marker
	CommitLSN, LSN uint64        // source position of the last done truncate
}

// Wiped reports whether the record at partition/offset carrying change c
// is wiped (c may be nil when the record cannot be decoded).
func (t *Truncated) Wiped(partition int, offset int64, c *Change) bool {
	if off, ok := t.Offsets[partition]; ok && offset < off {
		return true
	}
	return c != nil && t.Precedes(c)
}

// Precedes reports whether streamed change c comes before the last done
// truncate in the source (snapshot rows, without a position, never do).
func (t *Truncated) Precedes(c *Change) bool {
	if c.CommitLSN == 0 || t.CommitLSN == 0 {
		return false
	}
	return c.CommitLSN < t.CommitLSN || (c.CommitLSN == t.CommitLSN && c.LSN < t.LSN)
}

// Add records a done truncate whose marker in partition is at offset.
func (t *Truncated) Add(id BarrierID, partition int, offset int64) {
	if t.Offsets == nil {
		t.Offsets = map[int]int64{}
	}
	if off, ok := t.Offsets[partition]; !ok || offset > off {
		t.Offsets[partition] = offset
	}
	if id.CommitLSN > t.CommitLSN || (id.CommitLSN == t.CommitLSN && id.LSN > t.LSN) {
		t.CommitLSN, t.LSN = id.CommitLSN, id.LSN
	}
}
