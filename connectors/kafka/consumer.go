package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/scoop-cdc/scoop/pipeline"
)

// ConsumerConfig configures the consumption of one mapping's topic.
type ConsumerConfig struct {
	Brokers  []string
	GroupID  string // one consumer group per mapping: scoop.<mapping>
	Topic    string
	Mapping  *pipeline.Mapping
	MaxBatch int // changes per sink transaction (default 2000)
	// MaxBatchBytes bounds a batch's key+value bytes (default 8 MiB).
	MaxBatchBytes int
	Linger        time.Duration // wait for a fuller batch (default 20ms)
	// DeadLetters publishes events that can never be applied.
	DeadLetters pipeline.Publisher
	DLQTopic    string
	// Dialer carries TLS and SASL (nil: plaintext).
	Dialer *kafkago.Dialer
	// StartOffset for a group with no committed offset: kafkago.FirstOffset
	// (default) replays the whole retained history.
	StartOffset int64
	Logger      *slog.Logger
	// Barriers orders truncate markers against every partition, across
	// the instances of the group (nil: a truncate is applied where it is
	// read, ordered against its own partition only).
	Barriers pipeline.TruncateBarriers
}

// ConsumerStats are counters for metrics and status.
type ConsumerStats struct {
	Applied     atomic.Uint64
	DeadLetters atomic.Uint64
	Retries     atomic.Uint64
	LastCommit  atomic.Int64 // unix ms of the commit time of the last applied change
	Paused      atomic.Bool  // the store is failing and the mapping waits
	// SchemaMismatch: the target cannot take the source's columns; the
	// mapping waits for an operator (LastError says what to run).
	SchemaMismatch atomic.Bool
	// SchemaChanges counts sink rebuilds after the source's columns changed.
	SchemaChanges atomic.Uint64
	LastError     atomic.Pointer[string] // why the mapping last paused (nil while it flows)
}

// Consume feeds a sink from a topic until ctx ends. Offsets are committed to
// Kafka only after the sink committed the batch. A failing store is retried
// with backoff forever (the mapping pauses, nothing is skipped); an event
// that can never be applied goes to the dead-letter topic with its reason.
func Consume(ctx context.Context, cfg ConsumerConfig, sink pipeline.Sink, stats *ConsumerStats) error {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 2000
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 8 << 20
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 20 * time.Millisecond
	}
	if cfg.StartOffset == 0 {
		cfg.StartOffset = kafkago.FirstOffset
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if stats == nil {
		stats = &ConsumerStats{}
	}
	log := cfg.Logger.With("mapping", cfg.Mapping.Name, "topic", cfg.Topic)
	newReader := func() *kafkago.Reader {
		return kafkago.NewReader(kafkago.ReaderConfig{
			Brokers:       cfg.Brokers,
			GroupID:       cfg.GroupID,
			Topic:         cfg.Topic,
			MinBytes:      1,
			MaxWait:       100 * time.Millisecond,
			StartOffset:   cfg.StartOffset,
			Dialer:        cfg.Dialer,
			QueueCapacity: min(cfg.MaxBatch, 1000),
			MaxBytes:      min(cfg.MaxBatchBytes, 16<<20),
			// Offsets are committed after the store committed the batch; the
			// commit to Kafka itself is asynchronous (the PostgreSQL sink keeps
			// its own offsets, and every sink is idempotent under redelivery).
			CommitInterval: time.Second,
			// A crashed instance's partitions move to the others within ~10s.
			SessionTimeout:    10 * time.Second,
			RebalanceTimeout:  10 * time.Second,
			HeartbeatInterval: time.Second,
		})
	}
	gate := newTruncateGate(cfg, log, sink, stats)
	if err := gate.reset(ctx); err != nil {
		return err
	}
	r := newReader()
	defer func() { r.Close() }()
	commit := func(ms []kafkago.Message) error {
		if err := r.CommitMessages(ctx, ms...); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("mapping %s: commit offsets: %w", cfg.Mapping.Name, err)
		}
		return nil
	}
	apply := func(ms []kafkago.Message) error {
		if err := applyBatch(ctx, cfg, log, sink, stats, ms); err != nil {
			return err
		}
		return commit(ms)
	}
	msgs := make([]kafkago.Message, 0, cfg.MaxBatch)
	for {
		msgs = msgs[:0]
		reread, err := gate.poll(ctx)
		if err != nil {
			return err
		}
		if reread {
			// Closing flushes the committed offsets: the held partitions
			// are read again from their markers, now skipped.
			log.Info("truncate done; reading the held partitions again from their markers")
			if err := r.Close(); err != nil {
				log.Warn("close the reader after a truncate", "error", err)
			}
			if err := gate.reset(ctx); err != nil {
				return err
			}
			r = newReader()
			continue
		}
		// While partitions wait at a marker, the fetch gives way to the
		// barrier's poll; the other partitions keep flowing.
		fctx, fcancel := ctx, context.CancelFunc(func() {})
		if gate.waiting() {
			fctx, fcancel = context.WithTimeout(ctx, barrierPoll)
		}
		m, err := r.FetchMessage(fctx)
		fcancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if fctx.Err() != nil {
				continue
			}
			return fmt.Errorf("mapping %s: fetch from %s: %w", cfg.Mapping.Name, cfg.Topic, err)
		}
		msgs = append(msgs, m)
		size := len(m.Key) + len(m.Value)
		lctx, cancel := context.WithTimeout(ctx, cfg.Linger)
		for len(msgs) < cfg.MaxBatch && size < cfg.MaxBatchBytes {
			m, err := r.FetchMessage(lctx)
			if err != nil {
				break
			}
			msgs = append(msgs, m)
			size += len(m.Key) + len(m.Value)
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := gate.process(ctx, msgs, apply, commit); err != nil {
			return err
		}
	}
}

func applyBatch(ctx context.Context, cfg ConsumerConfig, log *slog.Logger, sink pipeline.Sink, stats *ConsumerStats, msgs []kafkago.Message) error {
	changes := make([]pipeline.Change, 0, len(msgs))
	var dead []pipeline.Record
	for _, m := range msgs {
		c, ok, err := pipeline.DecodeChange(m.Key, m.Value)
		if err != nil {
			dead = append(dead, deadLetter(cfg, m, err))
			continue
		}
		if !ok {
			continue // tombstone: the delete before it did the work
		}
		c.Topic, c.Partition, c.Offset = m.Topic, m.Partition, m.Offset
		c.KeyID = string(m.Key)
		cfg.Mapping.Shape(&c)
		changes = append(changes, c)
	}
	err := applyRetrying(ctx, log, sink, stats, changes)
	if pipeline.IsPermanent(err) {
		// Find the events that cannot be applied, one by one.
		for _, c := range changes {
			one := []pipeline.Change{c}
			if err := applyRetrying(ctx, log, sink, stats, one); err != nil {
				if !pipeline.IsPermanent(err) {
					return err
				}
				log.Error("event cannot be applied; sent to the dead-letter topic", "partition", c.Partition, "offset", c.Offset, "error", err)
				dead = append(dead, deadLetter(cfg, msgFor(msgs, c), err))
			}
		}
	} else if err != nil {
		return err
	}
	if len(dead) > 0 {
		if err := cfg.DeadLetters.Publish(ctx, dead); err != nil {
			return fmt.Errorf("mapping %s: publish %d dead letters: %w", cfg.Mapping.Name, len(dead), err)
		}
		stats.DeadLetters.Add(uint64(len(dead)))
	}
	stats.Applied.Add(uint64(len(changes)))
	if n := len(changes); n > 0 {
		stats.LastCommit.Store(changes[n-1].CommitTime.UnixMilli())
	}
	return nil
}

// applyRetrying retries transient failures with exponential backoff (100ms
// to 30s) until the store takes the batch or ctx ends.
func applyRetrying(ctx context.Context, log *slog.Logger, sink pipeline.Sink, stats *ConsumerStats, changes []pipeline.Change) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := sink.Apply(ctx, changes)
		// A schema change is not retried: the caller rebuilds the sink.
		if err == nil || pipeline.IsPermanent(err) || errors.Is(err, pipeline.ErrSchemaChanged) {
			stats.Paused.Store(false)
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		stats.Retries.Add(1)
		stats.Paused.Store(true)
		if attempt == 1 || attempt%10 == 0 {
			log.Warn("store unavailable; mapping paused, retrying", "attempt", attempt, "backoff", backoff, "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func msgFor(msgs []kafkago.Message, c pipeline.Change) kafkago.Message {
	for _, m := range msgs {
		if m.Partition == c.Partition && m.Offset == c.Offset {
			return m
		}
	}
	return kafkago.Message{Topic: c.Topic, Partition: c.Partition, Offset: c.Offset}
}

// deadLetter wraps an event that cannot be applied, with its reason and
// where it came from; the original key and value are kept.
func deadLetter(cfg ConsumerConfig, m kafkago.Message, err error) pipeline.Record {
	return pipeline.Record{
		Topic: cfg.DLQTopic,
		Key:   m.Key,
		Value: m.Value,
		Time:  time.Now(),
		Headers: map[string]string{
			"scoop.error":              err.Error(),
			"scoop.mapping":            cfg.Mapping.Name,
			"scoop.stage":              "sink",
			"scoop.original.topic":     m.Topic,
			"scoop.original.partition": strconv.Itoa(m.Partition),
			"scoop.original.offset":    strconv.FormatInt(m.Offset, 10),
		},
	}
}
