package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/scoop-cdc/scoop/schema"
)

// memBarriers is an in-process TruncateBarriers for the gate's
// unit test (the PostgreSQL one is tested against the server).
type memBarriers struct {
	arrived map[BarrierID]map[int]int64
	done    map[BarrierID]bool
}

func (b *memBarriers) Arrive(_ context.Context, id BarrierID, p int, off int64) (BarrierState, error) {
	if b.arrived[id] == nil {
		b.arrived[id] = map[int]int64{}
	}
	if _, ok := b.arrived[id][p]; !ok {
		b.arrived[id][p] = off
	}
	return b.State(context.Background(), id)
}

func (b *memBarriers) State(_ context.Context, id BarrierID) (BarrierState, error) {
	return BarrierState{Arrived: len(b.arrived[id]), Done: b.done[id]}, nil
}

func (b *memBarriers) Complete(ctx context.Context, id BarrierID, truncate func(context.Context) error) (BarrierState, error) {
	if !b.done[id] && len(b.arrived[id]) >= id.Partitions {
		if err := truncate(ctx); err != nil {
			return BarrierState{}, err
		}
		b.done[id] = true
	}
	return b.State(ctx, id)
}

func (b *memBarriers) Truncated(_ context.Context, group, topic string) (Truncated, error) {
	var t Truncated
	for id, done := range b.done {
		if done && id.Group == group && id.Topic == topic {
			for p, off := range b.arrived[id] {
				t.Add(id, p, off)
			}
		}
	}
	return t, nil
}

type recordingSink struct{ applied []string }

func (s *recordingSink) Apply(_ context.Context, batch []Change) error {
	for _, c := range batch {
		if c.Op == schema.OpTruncate {
			s.applied = append(s.applied, "TRUNCATE")
		} else {
			s.applied = append(s.applied, string(c.After["n"]))
		}
	}
	return nil
}

func (s *recordingSink) Close(context.Context) error { return nil }

func change(p int, off int64, n string, commitLSN uint64) Message {
	return Message{Topic: "t", Partition: p, Offset: off, Key: []byte(`{"id":` + n + `}`),
		Value: []byte(fmt.Sprintf(`{"op":"c","after":{"id":%s,"n":%s},"source":{"commit_lsn":%d,"lsn":%d}}`, n, n, commitLSN, commitLSN))}
}

func marker(p int, off int64) Message {
	return Message{Topic: "t", Partition: p, Offset: off, Value: []byte(`{"op":"t","source":{"commit_lsn":500,"lsn":450}}`),
		Headers: map[string]string{PartitionsHeader: "3"}}
}

// oldMarker is a copy of a truncate older than marker's, repeated by the
// source after a crash.
func oldMarker(p int, off int64) Message {
	m := marker(p, off)
	m.Value = []byte(`{"op":"t","source":{"commit_lsn":300,"lsn":250}}`)
	return m
}

func offsets(ms []Message) string {
	s := ""
	for _, m := range ms {
		s += fmt.Sprintf("%d/%d ", m.Partition, m.Offset)
	}
	return s
}

// The gate applies what precedes a marker, holds the marker's partition
// (dropping its later records uncommitted) while the others flow, truncates
// once every partition arrived, and, reading the held partitions again,
// skips the done marker and the records the truncate removed.
func TestTruncateGate(t *testing.T) {
	ctx := context.Background()
	bar := &memBarriers{arrived: map[BarrierID]map[int]int64{}, done: map[BarrierID]bool{}}
	sink := &recordingSink{}
	a := &applier{cfg: ApplyConfig{Group: "g", Topic: "t", Mapping: &Mapping{Name: "m"}, Barriers: bar}, log: slog.Default(), sink: sink, stats: &ApplyStats{}}
	g := newTruncateGate(a)
	if err := g.reset(ctx); err != nil {
		t.Fatal(err)
	}
	var applied, committed string
	apply := func(ms []Message) error {
		applied += "[" + offsets(ms) + "]"
		if err := a.applyBatch(ctx, ms); err != nil {
			return err
		}
		committed += offsets(ms)
		return nil
	}
	commit := func(ms []Message) error { committed += offsets(ms); return nil }

	batch := []Message{change(0, 0, "1", 100), change(1, 0, "2", 100), marker(0, 1), change(1, 1, "3", 200),
		change(0, 2, "4", 600), marker(2, 0), marker(1, 2), change(0, 3, "5", 700)}
	if err := g.process(ctx, batch, apply, commit); err != nil {
		t.Fatal(err)
	}
	if want := "[0/0 1/0 ][1/1 ]"; applied != want {
		t.Fatalf("applied %s, want %s", applied, want)
	}
	if want := "0/0 1/0 1/1 "; committed != want {
		t.Fatalf("committed %s, want %s (held partitions' records stay uncommitted)", committed, want)
	}
	if len(g.held) != 3 {
		t.Fatalf("held partitions %v, want 0, 1, 2", g.held)
	}
	reread, err := g.poll(ctx)
	if err != nil || !reread {
		t.Fatalf("poll: %v, %v", reread, err)
	}
	if err := g.reset(ctx); err != nil {
		t.Fatal(err)
	}
	// Read again: partition 0 from a lost commit (offset 0), the others
	// from their markers; the source repeated change 1 after the marker.
	applied, committed = "", ""
	again := []Message{change(0, 0, "1", 100), marker(0, 1), marker(1, 2), change(0, 2, "4", 600), marker(2, 0),
		change(1, 3, "1", 100), change(0, 3, "5", 700), oldMarker(1, 4)}
	if err := g.process(ctx, again, apply, commit); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(sink.applied), "[1 2 3 TRUNCATE 4 5]"; got != want {
		t.Fatalf("store saw %s, want %s", got, want)
	}
	if g.waiting() {
		t.Fatalf("partitions held after the barrier: %v", g.held)
	}
	if want := "0/1 1/2 0/2 2/0 0/3 0/0 1/3 1/4 "; committed != want {
		t.Fatalf("committed %s, want %s", committed, want)
	}
}
