package pipeline

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/scoop-cdc/scoop/schema"
)

// The truncate barrier lives in the apply stage, not in the Kafka reader:
// cutting a batch at a marker, holding the marker's partition, and running
// the truncate once through TruncateBarriers are decisions about the order
// in which changes reach the store, and they need the sink and the retries
// of this stage. The one thing Kafka-specific, reading the held partitions
// again from their markers, is Reader.Rewind (the Kafka reader re-creates
// its group reader). A reverse flow applying into the monolith gets the
// same ordering by implementing Reader.

// barrierPoll is how often a consumer holding truncate markers asks
// whether their barriers are done.
const barrierPoll = 200 * time.Millisecond

// barrierPatience is how long a partition waits at a marker before the
// wait is reported (and then again every barrierPatience).
const barrierPatience = time.Minute

// truncateGate orders truncate markers against every partition (see
// docs/sinks.md). When partition p's marker arrives, everything before it
// in p is applied and committed, the arrival is recorded in the barrier
// store shared by every instance of the group, and p is held: its later
// messages are dropped unapplied and uncommitted, so the reader delivers
// them again once rewound. Other partitions flow on. When every partition
// has arrived one consumer truncates the store; then every consumer holding
// a marker rewinds its reader and reads the held partitions again from the
// marker, which it now skips.
type truncateGate struct {
	a        *applier
	held     map[int]heldMarker // by partition
	lastPoll time.Time
	warned   time.Time // last report of a long wait
	// truncated: the done barriers; records they wiped are skipped.
	truncated Truncated
}

type heldMarker struct {
	id     BarrierID
	msg    Message
	change Change
	since  time.Time // when the partition started waiting
}

func newTruncateGate(a *applier) *truncateGate {
	return &truncateGate{a: a, held: map[int]heldMarker{}}
}

// waiting reports whether some partition is held at a marker.
func (g *truncateGate) waiting() bool { return len(g.held) > 0 }

// reset forgets the held markers (the reader is rewound: they will be read
// again) and loads the offsets of the done barriers.
func (g *truncateGate) reset(ctx context.Context) error {
	clear(g.held)
	if g.a.cfg.Barriers == nil {
		return nil
	}
	t, err := g.a.cfg.Barriers.Truncated(ctx, g.a.cfg.Group, g.a.cfg.Topic)
	if err != nil {
		return fmt.Errorf("mapping %s: %w", g.a.cfg.Mapping.Name, err)
	}
	g.truncated = t
	return nil
}

// markerPartitions returns the partition count written in a truncate
// marker's header (0: the message is not a marker).
func markerPartitions(m Message) int {
	v, ok := m.Headers[PartitionsHeader]
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// marker returns the barrier of a truncate marker, or ok=false for any
// other message (a truncate without the header, or on a topic of one
// partition, is ordered by its partition alone and applied in its batch).
func (g *truncateGate) marker(m Message) (heldMarker, bool) {
	n := markerPartitions(m)
	if n < 2 || g.a.cfg.Barriers == nil {
		return heldMarker{}, false
	}
	c, ok, err := g.a.decode(&m)
	if err != nil || !ok || c.Op != schema.OpTruncate {
		return heldMarker{}, false // dead-lettered with its reason by applyBatch
	}
	id := BarrierID{Group: g.a.cfg.Group, Topic: m.Topic, CommitLSN: c.CommitLSN, LSN: c.LSN, Partitions: n}
	return heldMarker{id: id, msg: m, change: c}, true
}

// process applies a fetched batch in order: messages of held partitions
// are dropped, and the batch is cut at each marker, so that what precedes
// a marker in its partition is applied and committed before it arrives.
// apply applies and commits messages; commit only commits them.
func (g *truncateGate) process(ctx context.Context, msgs []Message, apply, commit func([]Message) error) error {
	pending := make([]Message, 0, len(msgs))
	var wiped []Message
	for _, m := range msgs {
		if _, held := g.held[m.Partition]; held {
			continue
		}
		if g.wiped(m) {
			// Older than a truncate that is done, and read again (the
			// commit of its offset was lost, or the source repeated it
			// after the marker): applying it would bring back a row the
			// truncate removed.
			wiped = append(wiped, m)
			continue
		}
		hm, ok := g.marker(m)
		if !ok {
			pending = append(pending, m)
			continue
		}
		if g.truncated.Precedes(&hm.change) {
			// A repeat of a truncate older than a done one: the store
			// was emptied later than this already.
			wiped = append(wiped, m)
			continue
		}
		if len(pending) > 0 {
			if err := apply(pending); err != nil {
				return err
			}
			pending = pending[:0]
		}
		st, err := g.a.cfg.Barriers.Arrive(ctx, hm.id, m.Partition, m.Offset)
		if err != nil {
			return fmt.Errorf("mapping %s: %w", g.a.cfg.Mapping.Name, err)
		}
		if st.Done {
			// Truncated already: this partition is read again after
			// the barrier, or the source published the truncate twice.
			g.truncated.Add(hm.id, m.Partition, m.Offset)
			if err := commit([]Message{m}); err != nil {
				return err
			}
			continue
		}
		hm.since = time.Now()
		g.held[m.Partition] = hm
		g.a.log.Info("truncate marker reached; partition waits for the others", "partition", m.Partition, "offset", m.Offset, "barrier", hm.id.String(), "arrived", st.Arrived, "of", hm.id.Partitions)
		g.lastPoll = time.Time{} // check at once: it may be the last one
	}
	if len(pending) > 0 {
		if err := apply(pending); err != nil {
			return err
		}
	}
	if len(wiped) > 0 {
		return commit(wiped)
	}
	return nil
}

// wiped reports whether a record is older than a done truncate.
func (g *truncateGate) wiped(m Message) bool {
	if g.truncated.Offsets == nil && g.truncated.CommitLSN == 0 {
		return false
	}
	c, ok, err := g.a.decode(&m)
	if err != nil || !ok {
		return g.truncated.Wiped(m.Partition, m.Offset, nil)
	}
	if c.Op == schema.OpTruncate {
		return false // a marker: process decides
	}
	return g.truncated.Wiped(m.Partition, m.Offset, &c)
}

// poll completes the barriers whose markers all arrived (one instance
// truncates, the others find them done) and reports whether one held here
// is done: the reader must then be rewound to read the held partitions
// again from their markers.
func (g *truncateGate) poll(ctx context.Context) (reread bool, err error) {
	if !g.waiting() || time.Since(g.lastPoll) < barrierPoll {
		return false, nil
	}
	g.lastPoll = time.Now()
	checked := map[BarrierID]bool{}
	for _, hm := range g.held {
		if checked[hm.id] {
			continue
		}
		checked[hm.id] = true
		st, err := g.a.cfg.Barriers.State(ctx, hm.id)
		if err != nil {
			return false, fmt.Errorf("mapping %s: %w", g.a.cfg.Mapping.Name, err)
		}
		if !st.Done && st.Arrived >= hm.id.Partitions {
			st, err = g.a.cfg.Barriers.Complete(ctx, hm.id, func(ctx context.Context) error {
				return g.truncate(ctx, hm)
			})
			if err != nil {
				return false, fmt.Errorf("mapping %s: %w", g.a.cfg.Mapping.Name, err)
			}
		}
		if st.Done {
			reread = true
		} else if waited := time.Since(hm.since); waited > barrierPatience && time.Since(g.warned) > barrierPatience {
			g.warned = time.Now()
			g.a.log.Warn("partitions wait at a truncate marker for the other partitions' markers", "barrier", hm.id.String(),
				"arrived", st.Arrived, "of", hm.id.Partitions, "waiting", waited.Round(time.Second),
				"hint", "a partition whose marker is gone (retention) or was skipped (replay from offsets) never arrives; see docs/sinks.md, Truncate")
		}
	}
	return reread, nil
}

// truncate applies the marker's truncate to the store, retrying while the
// store is unavailable.
func (g *truncateGate) truncate(ctx context.Context, hm heldMarker) error {
	g.a.log.Info("every partition reached the truncate marker; truncating the store", "barrier", hm.id.String())
	if err := g.a.applyRetrying(ctx, []Change{hm.change}); err != nil {
		return fmt.Errorf("truncate the store at offset %d/%d: %w", hm.msg.Partition, hm.msg.Offset, err)
	}
	g.a.stats.Applied.Add(1)
	return nil
}
