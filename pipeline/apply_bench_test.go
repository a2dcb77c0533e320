package pipeline

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// loopReader hands out the same batches for ever, from new offsets.
type loopReader struct {
	batch []Message
	off   int64
}

func (r *loopReader) Fetch(ctx context.Context) ([]Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]Message, len(r.batch))
	for i, m := range r.batch {
		m.Offset = r.off
		r.off++
		out[i] = m
	}
	return out, nil
}

func (r *loopReader) Commit(context.Context, []Message) error { return nil }
func (r *loopReader) Rewind(context.Context) error            { return nil }

// countSink takes batches in a store that answers after a delay (the round
// trips of a real one) and ends the stage after n changes.
type countSink struct {
	n, got int
	delay  time.Duration
	cancel context.CancelFunc
}

func (s *countSink) Apply(_ context.Context, batch []Change) error {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	s.got += len(batch)
	if s.got >= s.n {
		s.cancel()
	}
	return nil
}

func (s *countSink) Close(context.Context) error { return nil }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkApply measures the apply stage's own work per change (decode,
// shape, batching, the read-ahead) over batches of 2,000 small-row inserts
// like make bench's, into a store that takes 2 ms per batch; cpu-ns/op is
// the process's CPU time per change.
func BenchmarkApply(b *testing.B) {
	batch := make([]Message, 2000)
	for i := range batch {
		id := i + 1
		batch[i] = Message{Topic: "t", Partition: i % 3, Key: []byte(fmt.Sprintf(`{"id":%d}`, id)),
			Value: []byte(fmt.Sprintf(`{"before":null,"after":{"id":%d,"k":%d,"v":0,"name":"user-%d-0123456789abcdef0123456789abcdef","amount":"12.34","created_at":"2026-11-26T05:00:00.123456Z","body":null},`+
				`"source":{"version":"2.7.0.Final","connector":"postgresql","name":"scoop","ts_ms":1764133200123,"snapshot":"false","db":"monolith","sequence":"[null,\"123456789\"]","schema":"public","table":"t","txId":1234,"lsn":123456789,"xmin":null,"commit_lsn":123456789},`+
				`"transaction":{"id":"1234:123456789","total_order":%d,"data_collection_order":%d},"op":"c","ts_ms":1764133200124}`, id, id%1000, id, id, id))}
	}
	b.ReportAllocs()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := &countSink{n: b.N, delay: 2 * time.Millisecond, cancel: cancel}
	cfg := ApplyConfig{Mapping: &Mapping{Name: "m"}, Group: "g", Topic: "t", DeadLetters: &fakeDeadLetters{}, DLQTopic: "scoop.dlq"}
	cpu := cpuTime()
	b.ResetTimer()
	if err := Apply(ctx, cfg, &loopReader{batch: batch}, sink, nil); err != nil && ctx.Err() == nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}
