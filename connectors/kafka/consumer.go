package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
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
	// Linger waits for a fuller batch (default 5ms). pipeline.Apply reads
	// the next batch while the store writes one, so a busy store still gets
	// full batches (messages queue meanwhile); an idle one gets what
	// arrived without waiting long.
	Linger time.Duration
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
	// SkipOrigin: see pipeline.ApplyConfig.
	SkipOrigin string
}

func (c *ConsumerConfig) defaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 2000
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 8 << 20
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.StartOffset == 0 {
		c.StartOffset = kafkago.FirstOffset
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// ConsumerStats are counters for metrics and status.
type ConsumerStats = pipeline.ApplyStats

// Consume feeds a sink from a topic until ctx ends: a Reader of the
// mapping's consumer group and pipeline.Apply (offsets are committed only
// after the sink committed the batch).
func Consume(ctx context.Context, cfg ConsumerConfig, sink pipeline.Sink, stats *ConsumerStats) error {
	cfg.defaults()
	r := NewReader(cfg)
	defer func() {
		if err := r.Close(); err != nil {
			cfg.Logger.Warn("close the consumer", "mapping", cfg.Mapping.Name, "topic", cfg.Topic, "error", err)
		}
	}()
	return pipeline.Apply(ctx, pipeline.ApplyConfig{
		Mapping: cfg.Mapping, Group: cfg.GroupID, Topic: cfg.Topic,
		DeadLetters: cfg.DeadLetters, DLQTopic: cfg.DLQTopic,
		Barriers: cfg.Barriers, Logger: cfg.Logger, SkipOrigin: cfg.SkipOrigin,
	}, r, sink, stats)
}

// Reader is one member of a mapping's consumer group, read in batches: the
// pipeline.Reader of the apply stage. Offsets are committed explicitly
// (FetchMessage, never ReadMessage) after the store took the messages.
type Reader struct {
	cfg ConsumerConfig
	mu  sync.Mutex      // Fetch runs concurrently with Commit (pipeline.Reader)
	r   *kafkago.Reader // nil after Rewind, until the next Fetch
}

// NewReader returns a Reader; it joins the group at its first Fetch.
func NewReader(cfg ConsumerConfig) *Reader {
	cfg.defaults()
	return &Reader{cfg: cfg}
}

func (r *Reader) reader() *kafkago.Reader {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		r.r = kafkago.NewReader(kafkago.ReaderConfig{
			Brokers:     r.cfg.Brokers,
			GroupID:     r.cfg.GroupID,
			Topic:       r.cfg.Topic,
			MinBytes:    1,
			MaxWait:     100 * time.Millisecond,
			StartOffset: r.cfg.StartOffset,
			Dialer:      r.cfg.Dialer,
			// The queue is counted in messages, whatever their size: 100 of
			// 1 MB events are 100 MB. Fetch drains it into a batch while the
			// batch before is written, so a longer queue buys no throughput.
			QueueCapacity: min(r.cfg.MaxBatch, 100),
			MaxBytes:      min(r.cfg.MaxBatchBytes, 16<<20),
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
	return r.r
}

// Fetch waits for one message, then lingers for more up to the batch's
// count and byte limits.
func (r *Reader) Fetch(ctx context.Context) ([]pipeline.Message, error) {
	kr := r.reader()
	m, err := kr.FetchMessage(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch from %s: %w", r.cfg.Topic, err)
	}
	msgs := make([]pipeline.Message, 0, min(r.cfg.MaxBatch, 1000))
	msgs = append(msgs, message(m))
	size := len(m.Key) + len(m.Value)
	lctx, cancel := context.WithTimeout(ctx, r.cfg.Linger)
	defer cancel()
	for len(msgs) < r.cfg.MaxBatch && size < r.cfg.MaxBatchBytes {
		m, err := kr.FetchMessage(lctx)
		if err != nil {
			break
		}
		msgs = append(msgs, message(m))
		size += len(m.Key) + len(m.Value)
	}
	return msgs, nil
}

// Commit commits the offsets of msgs (asynchronously to Kafka, within the
// reader's CommitInterval; Close and Rewind flush them).
func (r *Reader) Commit(ctx context.Context, msgs []pipeline.Message) error {
	ms := make([]kafkago.Message, len(msgs))
	for i, m := range msgs {
		ms[i] = kafkago.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	}
	if err := r.reader().CommitMessages(ctx, ms...); err != nil {
		return fmt.Errorf("commit offsets: %w", err)
	}
	return nil
}

// Rewind closes the group reader, which flushes the committed offsets; the
// next Fetch joins the group again and reads from them.
func (r *Reader) Rewind(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return nil
	}
	if err := r.r.Close(); err != nil {
		r.cfg.Logger.Warn("close the reader after a truncate", "mapping", r.cfg.Mapping.Name, "topic", r.cfg.Topic, "error", err)
	}
	r.r = nil
	return nil
}

// Close leaves the group, flushing the committed offsets.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return nil
	}
	err := r.r.Close()
	r.r = nil
	if err != nil {
		return fmt.Errorf("close the reader of %s: %w", r.cfg.Topic, err)
	}
	return nil
}

// message converts a kafka-go message for the apply stage.
func message(m kafkago.Message) pipeline.Message {
	pm := pipeline.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value}
	if len(m.Headers) > 0 {
		pm.Headers = make(map[string]string, len(m.Headers))
		for _, h := range m.Headers {
			pm.Headers[h.Key] = string(h.Value)
		}
	}
	return pm
}

var _ pipeline.Reader = (*Reader)(nil)
