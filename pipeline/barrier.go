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
	// Truncated returns, per partition, the offset of the last marker of a
	// done barrier of the group and topic: the messages below it were
	// applied before the truncate and wiped by it, so a consumer that reads
	// them again (its commit of them was lost) skips them.
	Truncated(ctx context.Context, group, topic string) (map[int]int64, error)
}
