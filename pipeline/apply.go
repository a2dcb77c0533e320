package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
)

// Message is one record read back from the log (a Kafka topic) by the
// apply stage. A nil Value is a tombstone.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   map[string]string

	// decoded is the change as Apply's fetching goroutine decoded and
	// shaped it while the batch before was being written (nil: decoded
	// when applied).
	decoded *decoded
}

// decoded is a message's change, or why it cannot be decoded.
type decoded struct {
	change Change
	ok     bool // false: a tombstone
	err    error
}

// Reader is the log the apply stage reads: in scoop, one member of a Kafka
// consumer group (connectors/kafka.Reader). The caller owns and closes it.
type Reader interface {
	// Fetch blocks until at least one message is read or ctx ends, and
	// returns the messages read, in order within each partition. Apply
	// fetches the next batch while it applies the one before: Fetch runs
	// concurrently with Commit (never with Rewind, nor with itself).
	Fetch(ctx context.Context) ([]Message, error)
	// Commit records that msgs were applied, so that they are not
	// delivered again. Apply calls it only after the sink took them.
	Commit(ctx context.Context, msgs []Message) error
	// Rewind forgets what was fetched and not committed: later Fetches
	// read every partition again from its last commit.
	Rewind(ctx context.Context) error
}

// ApplyConfig configures the apply stage of one mapping.
type ApplyConfig struct {
	Mapping *Mapping
	// Group and Topic name what is read (the consumer group scoop.<mapping>
	// and its topic): they identify the truncate barriers.
	Group, Topic string
	// DeadLetters publishes, to DLQTopic, the events that can never be
	// applied.
	DeadLetters Publisher
	DLQTopic    string
	// Barriers orders truncate markers against every partition, across
	// the instances of the group (nil: a truncate is applied where it is
	// read, ordered against its own partition only).
	Barriers TruncateBarriers
	// SkipOrigin: events whose OriginHeader names this flow came from the
	// store this stage writes (its mapping's opposite flow applied them
	// there); they are committed without being applied.
	SkipOrigin string
	Logger     *slog.Logger
}

// ApplyStats are counters for metrics and status.
type ApplyStats struct {
	Applied     atomic.Uint64
	DeadLetters atomic.Uint64
	Retries     atomic.Uint64
	LastCommit  atomic.Int64 // unix ms of the commit time of the last applied change
	LastApplied atomic.Int64 // unix ms (this host's clock) when that change was applied
	Paused      atomic.Bool  // the store is failing and the mapping waits
	// SchemaMismatch: the target cannot take the source's columns; the
	// mapping waits for an operator (LastError says what to run).
	SchemaMismatch atomic.Bool
	// SchemaChanges counts sink rebuilds after the source's columns changed.
	SchemaChanges atomic.Uint64
	// Echoes counts the events skipped because they came from this store
	// (ApplyConfig.SkipOrigin).
	Echoes    atomic.Uint64
	LastError atomic.Pointer[string] // why the mapping last paused (nil while it flows)
}

// applyBackoff bounds the wait between attempts on a failing store.
var applyBackoff = Backoff{Min: 100 * time.Millisecond, Max: 30 * time.Second}

// Apply feeds a sink from a reader until ctx ends or the sink cannot go on;
// it is the mirror of Forward. Each fetched batch is decoded, shaped by the
// mapping and applied; its offsets are committed only after the sink
// committed it. A failing store is retried with backoff forever (the
// mapping pauses, nothing is skipped); an event that can never be applied
// goes to the dead-letter topic with its reason; ErrSchemaChanged is
// returned at once, uncommitted, for the caller to rebuild the sink.
func Apply(ctx context.Context, cfg ApplyConfig, r Reader, sink Sink, stats *ApplyStats) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if stats == nil {
		stats = &ApplyStats{}
	}
	a := &applier{cfg: cfg, log: cfg.Logger.With("mapping", cfg.Mapping.Name, "topic", cfg.Topic), sink: sink, stats: stats}
	commit := func(ms []Message) error {
		if err := r.Commit(ctx, ms); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("mapping %s: %w", cfg.Mapping.Name, err)
		}
		return nil
	}
	apply := func(ms []Message) error {
		if err := a.applyBatch(ctx, ms); err != nil {
			return err
		}
		return commit(ms)
	}
	gate := newTruncateGate(a)
	if err := gate.reset(ctx); err != nil {
		return err
	}
	f := a.fetchAhead(ctx, r)
	defer func() { f.stop() }()
	for {
		reread, err := gate.poll(ctx)
		if err != nil {
			return err
		}
		if reread {
			a.log.Info("truncate done; reading the held partitions again from their markers")
			f.stop() // what it fetched ahead is read again after the rewind
			if err := r.Rewind(ctx); err != nil {
				return fmt.Errorf("mapping %s: %w", cfg.Mapping.Name, err)
			}
			if err := gate.reset(ctx); err != nil {
				return err
			}
			f = a.fetchAhead(ctx, r)
			continue
		}
		// While partitions wait at a marker, waiting for a batch gives way
		// to the barrier's poll; the other partitions keep flowing.
		got, ok := f.next(ctx, gate.waiting())
		if !ok {
			continue
		}
		if got.err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("mapping %s: %w", cfg.Mapping.Name, got.err)
		}
		if err := gate.process(ctx, got.msgs, apply, commit); err != nil {
			return err
		}
	}
}

// fetched is a batch read ahead, or the error that ended the reading.
type fetched struct {
	msgs []Message
	err  error
}

// fetcher reads and decodes the next batch while the stage applies the
// one before: the store's round trips and the decoding overlap. It holds
// at most one batch that the stage has not taken (memory stays bounded),
// and commits nothing: offsets still move only after the sink took them.
type fetcher struct {
	batches chan fetched
	cancel  context.CancelFunc
	done    chan struct{}
}

func (a *applier) fetchAhead(ctx context.Context, r Reader) *fetcher {
	fctx, cancel := context.WithCancel(ctx)
	f := &fetcher{batches: make(chan fetched), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			msgs, err := r.Fetch(fctx)
			if fctx.Err() != nil {
				return
			}
			if err == nil {
				ds := make([]decoded, len(msgs)) // one allocation per batch
				for i := range msgs {
					a.predecode(&msgs[i], &ds[i])
				}
			}
			select {
			case f.batches <- fetched{msgs: msgs, err: err}:
			case <-fctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return f
}

// next waits for the batch read ahead; with poll, for barrierPoll at most
// (ok=false when none came).
func (f *fetcher) next(ctx context.Context, poll bool) (got fetched, ok bool) {
	var timeout <-chan time.Time
	if poll {
		t := time.NewTimer(barrierPoll)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case got = <-f.batches:
		return got, true
	case <-timeout:
		return fetched{}, false
	case <-ctx.Done():
		return fetched{err: ctx.Err()}, true
	}
}

// stop ends the reading ahead and waits for it: no Fetch runs after it.
func (f *fetcher) stop() {
	f.cancel()
	<-f.done
}

// applier applies batches of one mapping to its sink.
type applier struct {
	cfg   ApplyConfig
	log   *slog.Logger
	sink  Sink
	stats *ApplyStats
}

// applyBatch decodes, shapes and applies msgs in order; records that
// cannot be decoded or applied are dead-lettered, tombstones skipped.
func (a *applier) applyBatch(ctx context.Context, msgs []Message) error {
	changes := make([]Change, 0, len(msgs))
	var dead []Record
	for _, m := range msgs {
		if a.cfg.SkipOrigin != "" && m.Headers[OriginHeader] == a.cfg.SkipOrigin {
			if m.Value != nil {
				a.stats.Echoes.Add(1)
			}
			continue // written by this mapping's other flow from this store
		}
		c, ok, err := a.decode(&m)
		if err != nil {
			dead = append(dead, a.deadLetter(m, err))
			continue
		}
		if !ok {
			continue // tombstone: the delete before it did the work
		}
		changes = append(changes, c)
	}
	err := a.applyRetrying(ctx, changes)
	if IsPermanent(err) {
		poison, err := a.isolate(ctx, changes)
		if err != nil {
			return err
		}
		for _, p := range poison {
			c := changes[p.index]
			a.log.Error("event cannot be applied; sent to the dead-letter topic", "partition", c.Partition, "offset", c.Offset, "error", p.err)
			dead = append(dead, a.deadLetter(messageFor(msgs, c), p.err))
		}
	} else if err != nil {
		return err
	}
	if len(dead) > 0 {
		if err := a.cfg.DeadLetters.Publish(ctx, dead); err != nil {
			return fmt.Errorf("mapping %s: publish %d dead letters: %w", a.cfg.Mapping.Name, len(dead), err)
		}
		a.stats.DeadLetters.Add(uint64(len(dead)))
	}
	a.stats.Applied.Add(uint64(len(changes)))
	if n := len(changes); n > 0 {
		a.stats.LastCommit.Store(changes[n-1].CommitTime.UnixMilli())
		a.stats.LastApplied.Store(time.Now().UnixMilli())
	}
	return nil
}

// predecode decodes and shapes m ahead of its batch's application (echoes
// of this flow are skipped unread, as applyBatch skips them).
func (a *applier) predecode(m *Message, d *decoded) {
	if a.cfg.SkipOrigin != "" && m.Headers[OriginHeader] == a.cfg.SkipOrigin {
		return
	}
	d.change, d.ok, d.err = a.decode(m)
	m.decoded = d
}

// decode returns m's change, shaped by the mapping and saying where it was
// read from; ok=false for a tombstone.
func (a *applier) decode(m *Message) (Change, bool, error) {
	if d := m.decoded; d != nil {
		return d.change, d.ok, d.err
	}
	c, ok, err := DecodeChange(m.Key, m.Value)
	if err != nil || !ok {
		return c, ok, err
	}
	c.Topic, c.Partition, c.Offset = m.Topic, m.Partition, m.Offset
	c.KeyID = string(m.Key)
	c.Prev = m.Headers[PrevHeader]
	a.cfg.Mapping.Shape(&c)
	return c, true, nil
}

type poisonChange struct {
	index int // in the batch
	err   error
}

// isolate applies a batch that failed permanently in halves, in order,
// splitting each half that fails again, and returns the changes that fail
// alone: the rest of the batch is applied. A batch with one poison change
// among n takes about 2·log2(n) applications instead of n.
func (a *applier) isolate(ctx context.Context, changes []Change) ([]poisonChange, error) {
	var poison []poisonChange
	var split func(lo, hi int) error
	split = func(lo, hi int) error {
		mid := (lo + hi) / 2
		for _, half := range [][2]int{{lo, mid}, {mid, hi}} {
			if half[0] == half[1] {
				continue
			}
			err := a.applyRetrying(ctx, changes[half[0]:half[1]])
			switch {
			case err == nil:
			case !IsPermanent(err):
				return err
			case half[1]-half[0] == 1:
				poison = append(poison, poisonChange{half[0], err})
			default:
				if err := split(half[0], half[1]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := split(0, len(changes)); err != nil {
		return nil, err
	}
	return poison, nil
}

// applyRetrying retries transient failures with exponential backoff (100ms
// to 30s) until the store takes the batch or ctx ends.
func (a *applier) applyRetrying(ctx context.Context, changes []Change) error {
	backoff := applyBackoff
	for attempt := 1; ; attempt++ {
		err := a.sink.Apply(ctx, changes)
		// A schema change is not retried: the caller rebuilds the sink.
		if err == nil || IsPermanent(err) || errors.Is(err, ErrSchemaChanged) {
			if a.stats.Paused.Swap(false) {
				a.stats.LastError.Store(nil)
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.stats.Retries.Add(1)
		msg := err.Error()
		a.stats.LastError.Store(&msg)
		a.stats.Paused.Store(true)
		wait := backoff.Next()
		if attempt == 1 || attempt%10 == 0 {
			a.log.Warn("store unavailable; mapping paused, retrying", "attempt", attempt, "backoff", wait, "error", err)
		}
		if err := Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

func messageFor(msgs []Message, c Change) Message {
	for _, m := range msgs {
		if m.Partition == c.Partition && m.Offset == c.Offset {
			return m
		}
	}
	return Message{Topic: c.Topic, Partition: c.Partition, Offset: c.Offset}
}

// deadLetter wraps an event that cannot be applied, with its reason and
// where it came from; the original key and value are kept (the headers are
// listed in docs/sinks.md).
func (a *applier) deadLetter(m Message, err error) Record {
	return Record{
		Topic: a.cfg.DLQTopic,
		Key:   m.Key,
		Value: m.Value,
		Time:  time.Now(),
		Headers: map[string]string{
			"scoop.error":              err.Error(),
			"scoop.mapping":            a.cfg.Mapping.Name,
			"scoop.stage":              "sink",
			"scoop.original.topic":     m.Topic,
			"scoop.original.partition": strconv.Itoa(m.Partition),
			"scoop.original.offset":    strconv.FormatInt(m.Offset, 10),
		},
	}
}
