package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/schema"
)

// fakeReader hands out its batches, then ends the stage with errReaderDry
// (Apply returns it once it has applied every batch before it); it
// records every commit and rewind. Batches from afterRewind on (0: none)
// are what the log holds after a rewind: before one, Fetch waits as a
// reader holding nothing new would.
type fakeReader struct {
	batches     [][]Message
	afterRewind int
	next        int
	committed   []string // "partition/offset", in commit order
	rewinds     int
	// fetched, when set, is told the number of each batch handed out.
	fetched chan int
}

var errReaderDry = errors.New("fake reader ran dry")

func (r *fakeReader) Fetch(ctx context.Context) ([]Message, error) {
	if r.afterRewind > 0 && r.next >= r.afterRewind && r.rewinds == 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if r.next == len(r.batches) {
		return nil, errReaderDry
	}
	b := r.batches[r.next]
	r.next++
	if r.fetched != nil {
		r.fetched <- r.next
	}
	return b, nil
}

func (r *fakeReader) Commit(_ context.Context, msgs []Message) error {
	for _, m := range msgs {
		r.committed = append(r.committed, fmt.Sprintf("%d/%d", m.Partition, m.Offset))
	}
	return nil
}

func (r *fakeReader) Rewind(context.Context) error { r.rewinds++; return nil }

// fakeSink fails as fail says (nil: it takes the batch, which it records);
// each call's batch size and the commits made before it are noted.
type fakeSink struct {
	fail    func(call int, batch []Change) error
	calls   []int    // batch sizes
	applied []string // values of "n" taken, in order
	reader  *fakeReader
	// committedAtCall[i]: how many offsets were committed when call i came.
	committedAtCall []int
}

func (s *fakeSink) Apply(_ context.Context, batch []Change) error {
	s.calls = append(s.calls, len(batch))
	if s.reader != nil {
		s.committedAtCall = append(s.committedAtCall, len(s.reader.committed))
	}
	if s.fail != nil {
		if err := s.fail(len(s.calls), batch); err != nil {
			return err
		}
	}
	for _, c := range batch {
		if c.Op == schema.OpTruncate {
			s.applied = append(s.applied, "TRUNCATE")
		} else {
			s.applied = append(s.applied, string(c.After["n"]))
		}
	}
	return nil
}

func (s *fakeSink) Close(context.Context) error { return nil }

// fakeDeadLetters keeps what it is given.
type fakeDeadLetters struct {
	mu      sync.Mutex
	records []Record
}

func (d *fakeDeadLetters) Publish(_ context.Context, records []Record) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records = append(d.records, records...)
	return nil
}

func row(p int, off int64, n int) Message { return rowAt(p, off, n, uint64(100+n)) }

// rowAt is a row written by a transaction that committed at lsn.
func rowAt(p int, off int64, n int, lsn uint64) Message {
	return Message{Topic: "t", Partition: p, Offset: off, Key: []byte(fmt.Sprintf(`{"id":%d}`, n)),
		Value: []byte(fmt.Sprintf(`{"op":"c","after":{"id":%d,"n":%d},"source":{"commit_lsn":%d,"lsn":%d}}`, n, n, lsn, lsn))}
}

// runApply runs the stage over batches until the reader runs dry.
func runApply(t *testing.T, sink *fakeSink, batches ...[]Message) (*fakeReader, *fakeDeadLetters, *ApplyStats, error) {
	t.Helper()
	return runApplyBarriers(t, sink, nil, batches...)
}

func runApplyBarriers(t *testing.T, sink *fakeSink, bar TruncateBarriers, batches ...[]Message) (*fakeReader, *fakeDeadLetters, *ApplyStats, error) {
	t.Helper()
	return runApplyReader(t, sink, bar, &fakeReader{batches: batches})
}

func runApplyReader(t *testing.T, sink *fakeSink, bar TruncateBarriers, r *fakeReader) (*fakeReader, *fakeDeadLetters, *ApplyStats, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sink.reader = r
	dlq := &fakeDeadLetters{}
	stats := &ApplyStats{}
	cfg := ApplyConfig{Mapping: &Mapping{Name: "m"}, Group: "g", Topic: "t", DeadLetters: dlq, DLQTopic: "scoop.dlq", Logger: slog.Default(), Barriers: bar}
	err := Apply(ctx, cfg, r, sink, stats)
	if errors.Is(err, errReaderDry) {
		err = nil
	}
	return r, dlq, stats, err
}

// A store that fails twice is retried with backoff until it takes the
// batch; the offsets are committed only then.
func TestApplyRetriesTransientErrors(t *testing.T) {
	down := errors.New("connection refused")
	sink := &fakeSink{fail: func(call int, _ []Change) error {
		if call <= 2 {
			return down
		}
		return nil
	}}
	r, _, stats, err := runApply(t, sink, []Message{row(0, 0, 1), row(0, 1, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(sink.calls), "[2 2 2]"; got != want {
		t.Fatalf("sink calls %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(sink.committedAtCall), "[0 0 0]"; got != want {
		t.Fatalf("offsets committed before each attempt %s, want %s", got, want)
	}
	if got, want := strings.Join(r.committed, " "), "0/0 0/1"; got != want {
		t.Fatalf("committed %s, want %s", got, want)
	}
	if stats.Retries.Load() != 2 || stats.Paused.Load() || stats.Applied.Load() != 2 {
		t.Fatalf("retries %d paused %v applied %d, want 2 false 2", stats.Retries.Load(), stats.Paused.Load(), stats.Applied.Load())
	}
}

// One change the store can never take, among many, is found by bisection
// and dead-lettered with its reason and origin; the rest is applied, in
// order, and everything is committed.
func TestApplyIsolatesPoisonChange(t *testing.T) {
	const n, poison = 64, 37
	var batch []Message
	for i := range n {
		batch = append(batch, row(i%2, int64(i), i))
	}
	sink := &fakeSink{fail: func(_ int, b []Change) error {
		for _, c := range b {
			if string(c.After["n"]) == fmt.Sprint(poison) {
				return Permanent(fmt.Errorf("value too long for column %q", "n"))
			}
		}
		return nil
	}}
	r, dlq, stats, err := runApply(t, sink, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(sink.calls) > 1+2*6 {
		t.Errorf("%d sink calls %v to isolate 1 change among %d, want at most %d", len(sink.calls), sink.calls, n, 1+2*6)
	}
	var want []string
	for i := range n {
		if i != poison {
			want = append(want, fmt.Sprint(i))
		}
	}
	if got := strings.Join(sink.applied, " "); got != strings.Join(want, " ") {
		t.Fatalf("store took %s, want %s", got, strings.Join(want, " "))
	}
	if len(dlq.records) != 1 {
		t.Fatalf("dead letters %+v, want one", dlq.records)
	}
	d := dlq.records[0]
	wantHeaders := map[string]string{
		"scoop.error":              `value too long for column "n"`,
		"scoop.mapping":            "m",
		"scoop.stage":              "sink",
		"scoop.original.topic":     "t",
		"scoop.original.partition": "1",
		"scoop.original.offset":    "37",
	}
	if fmt.Sprint(d.Headers) != fmt.Sprint(wantHeaders) || d.Topic != "scoop.dlq" || string(d.Key) != string(batch[poison].Key) || string(d.Value) != string(batch[poison].Value) {
		t.Fatalf("dead letter %s %s %s %v, want the original record with headers %v", d.Topic, d.Key, d.Value, d.Headers, wantHeaders)
	}
	if len(r.committed) != n || stats.DeadLetters.Load() != 1 {
		t.Fatalf("committed %d offsets, %d dead letters; want %d, 1", len(r.committed), stats.DeadLetters.Load(), n)
	}
}

// A lone change the store cannot take is dead-lettered too.
func TestApplyDeadLettersLoneChange(t *testing.T) {
	sink := &fakeSink{fail: func(int, []Change) error { return Permanent(errors.New("bad")) }}
	r, dlq, _, err := runApply(t, sink, []Message{row(0, 5, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(dlq.records) != 1 || dlq.records[0].Headers["scoop.original.offset"] != "5" || strings.Join(r.committed, " ") != "0/5" {
		t.Fatalf("dead letters %+v, committed %v", dlq.records, r.committed)
	}
}

// A schema change is returned to the caller at once, not retried, and
// nothing of the batch is committed.
func TestApplyReturnsSchemaChange(t *testing.T) {
	changed := &SchemaChangedError{Columns: []string{"email"}, Reason: "events carry columns the target does not have"}
	sink := &fakeSink{fail: func(int, []Change) error { return fmt.Errorf("apply: %w", changed) }}
	r, dlq, _, err := runApply(t, sink, []Message{row(0, 0, 1)}, []Message{row(0, 1, 2)})
	if !errors.Is(err, ErrSchemaChanged) {
		t.Fatalf("Apply returned %v, want ErrSchemaChanged", err)
	}
	if want := `source schema changed: events carry columns the target does not have (columns "email")`; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if len(sink.calls) != 1 || len(r.committed) != 0 || len(dlq.records) != 0 {
		t.Fatalf("sink calls %v, committed %v, dead letters %d; want one call, nothing committed or dead-lettered", sink.calls, r.committed, len(dlq.records))
	}
}

// Tombstones are skipped (the delete before them did the work) and
// committed with their batch.
func TestApplySkipsTombstones(t *testing.T) {
	sink := &fakeSink{}
	tomb := Message{Topic: "t", Partition: 0, Offset: 1, Key: []byte(`{"id":1}`)}
	r, dlq, stats, err := runApply(t, sink, []Message{row(0, 0, 1), tomb, row(0, 2, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sink.applied, " "); got != "1 2" || len(dlq.records) != 0 || stats.Applied.Load() != 2 {
		t.Fatalf("store took %q, %d dead letters, applied %d; want \"1 2\", 0, 2", got, len(dlq.records), stats.Applied.Load())
	}
	if got := strings.Join(r.committed, " "); got != "0/0 0/1 0/2" {
		t.Fatalf("committed %s, want 0/0 0/1 0/2", got)
	}
}

// A record that cannot be decoded is dead-lettered with the decoder's
// reason; the others are applied and all are committed.
func TestApplyDeadLettersUndecodable(t *testing.T) {
	sink := &fakeSink{}
	bad := Message{Topic: "t", Partition: 0, Offset: 1, Key: []byte(`{"id":9}`), Value: []byte(`{"op":"c","after":`)}
	r, dlq, _, err := runApply(t, sink, []Message{row(0, 0, 1), bad, row(0, 2, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sink.applied, " "); got != "1 2" {
		t.Fatalf("store took %q, want \"1 2\"", got)
	}
	if len(dlq.records) != 1 {
		t.Fatalf("dead letters %+v, want one", dlq.records)
	}
	d := dlq.records[0]
	if d.Headers["scoop.original.offset"] != "1" || d.Headers["scoop.stage"] != "sink" || !strings.Contains(d.Headers["scoop.error"], "unexpected end of JSON input") || string(d.Value) != string(bad.Value) {
		t.Fatalf("dead letter %s %v, want the record with the decode error", d.Value, d.Headers)
	}
	if got := strings.Join(r.committed, " "); got != "0/0 0/1 0/2" {
		t.Fatalf("committed %s, want 0/0 0/1 0/2", got)
	}
}

// The stage holds the partitions that reached a truncate marker, truncates
// once both arrived, rewinds the reader, and on reading the partitions
// again skips the done markers and applies what follows them.
func TestApplyTruncateBarrier(t *testing.T) {
	bar := &memBarriers{arrived: map[BarrierID]map[int]int64{}, done: map[BarrierID]bool{}}
	sink := &fakeSink{}
	mark := func(p int, off int64) Message {
		return Message{Topic: "t", Partition: p, Offset: off, Value: []byte(`{"op":"t","source":{"commit_lsn":500,"lsn":450}}`),
			Headers: map[string]string{PartitionsHeader: "2"}}
	}
	r, _, _, err := runApplyReader(t, sink, bar, &fakeReader{afterRewind: 1, batches: [][]Message{
		{row(0, 0, 1), mark(0, 1), rowAt(0, 2, 2, 600), row(1, 0, 3), mark(1, 1)},
		{mark(0, 1), rowAt(0, 2, 2, 600), mark(1, 1), rowAt(1, 2, 4, 700)}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(sink.applied, " "), "1 3 TRUNCATE 2 4"; got != want {
		t.Fatalf("store saw %s, want %s", got, want)
	}
	if r.rewinds != 1 {
		t.Fatalf("%d rewinds, want 1", r.rewinds)
	}
	if got, want := strings.Join(r.committed, " "), "0/0 1/0 0/1 0/2 1/1 1/2"; got != want {
		t.Fatalf("committed %s, want %s", got, want)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 5 * time.Second}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	b.Reset()
	got = append(got, b.Next())
	if want := "[1s 2s 4s 5s 5s 1s]"; fmt.Sprint(got) != want {
		t.Fatalf("waits %v, want %s", got, want)
	}
	var zero Backoff
	if d := zero.Next(); d != 100*time.Millisecond {
		t.Fatalf("zero Backoff waits %v first, want 100ms", d)
	}
}

// Events that the mapping's other flow wrote from this store are committed
// without being applied; the same flow's name on another mapping, or no
// header, is applied.
func TestApplySkipsOwnEchoes(t *testing.T) {
	sink := &fakeSink{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	echo := row(0, 1, 2)
	echo.Headers = map[string]string{OriginHeader: "reverse:m"}
	other := row(0, 2, 3)
	other.Headers = map[string]string{OriginHeader: "reverse:other"}
	r := &fakeReader{batches: [][]Message{{row(0, 0, 1), echo, other}}}
	sink.reader = r
	stats := &ApplyStats{}
	cfg := ApplyConfig{Mapping: &Mapping{Name: "m"}, Group: "g", Topic: "t", DeadLetters: &fakeDeadLetters{}, DLQTopic: "scoop.dlq", SkipOrigin: ReverseOrigin(&Mapping{Name: "m"})}
	if err := Apply(ctx, cfg, r, sink, stats); err != nil && !errors.Is(err, errReaderDry) {
		t.Fatal(err)
	}
	if got := strings.Join(sink.applied, " "); got != "1 3" || stats.Echoes.Load() != 1 {
		t.Fatalf("store took %q, %d echoes skipped; want \"1 3\" and 1", got, stats.Echoes.Load())
	}
	if got := strings.Join(r.committed, " "); got != "0/0 0/1 0/2" {
		t.Fatalf("committed %s, want 0/0 0/1 0/2", got)
	}
}

// The next batch is read and decoded while the sink writes the one before,
// and its offsets are committed only after the sink took it.
func TestApplyFetchesAhead(t *testing.T) {
	fetched := make(chan int, 3)
	var decodedAhead bool
	sink := &fakeSink{}
	r := &fakeReader{fetched: fetched, batches: [][]Message{{row(0, 0, 1)}, {row(0, 1, 2)}}}
	sink.fail = func(call int, _ []Change) error {
		if call != 1 {
			return nil
		}
		// Apply of batch 1 waits for batch 2 to be fetched: without
		// reading ahead, this would wait for ever.
		for {
			select {
			case n := <-fetched:
				if n == 2 {
					decodedAhead = true
					return nil
				}
			case <-time.After(5 * time.Second):
				return Permanent(errors.New("batch 2 was not fetched while batch 1 was applied"))
			}
		}
	}
	_, _, _, err := runApplyReader(t, sink, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	if !decodedAhead {
		t.Fatalf("batch 2 was not fetched while batch 1 was applied; store saw %v", sink.applied)
	}
	if got, want := strings.Join(sink.applied, " "), "1 2"; got != want {
		t.Fatalf("store saw %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(sink.committedAtCall), "[0 1]"; got != want {
		t.Fatalf("offsets committed before each sink call: %s, want %s", got, want)
	}
}
