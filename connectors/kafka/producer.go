package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/scoop-cdc/scoop/pipeline"
)

// Config configures the connection to Kafka.
type Config struct {
	Brokers           []string
	Partitions        int // partitions of topics scoop creates (default 3)
	ReplicationFactor int // of topics scoop creates (-1: broker default)
	MaxMessageBytes   int // larger records go to the dead-letter topic (default 1000000)
	DLQTopic          string
	Transport         *kafkago.Transport // TLS/SASL; nil for plain
}

// Validate names the field at fault.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: no brokers (set SCOOP_KAFKA_BROKERS, e.g. 127.0.0.1:9092)")
	}
	if c.Partitions == 0 {
		c.Partitions = 3
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 1000000
	}
	if c.DLQTopic == "" {
		return errors.New("kafka: no dead-letter topic configured")
	}
	return nil
}

// Producer publishes records to Kafka with acks=all.
type Producer struct {
	cfg    Config
	writer *kafkago.Writer
	client *kafkago.Client

	mu     sync.Mutex
	topics map[string]bool        // topics known to exist
	parts  map[string]cachedCount // for truncate markers
}

// NewProducer returns a Producer; no connection is made until first use.
func NewProducer(cfg Config) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var transport kafkago.RoundTripper = kafkago.DefaultTransport
	if cfg.Transport != nil {
		transport = cfg.Transport
	}
	w := &kafkago.Writer{
		Addr:         kafkago.TCP(cfg.Brokers...),
		Balancer:     &markerBalancer{},
		RequiredAcks: kafkago.RequireAll,
		MaxAttempts:  10,
		// kafka-go allocates a batch's message slice at BatchSize (152
		// bytes a message, zeroed and scanned by the GC) whatever the batch
		// holds: 10,000 cost 1.5 MB per batch, 5.6 KB per record of
		// 3.8 KB events (Kafka Connect schemas), whose batches end at
		// BatchBytes after ~270 records. 2,000 still holds a whole
		// BatchBytes of 500-byte records.
		BatchSize: 2000,
		// The broker limits a whole record batch (max.message.bytes), not
		// a record: a batch larger than the limit is refused entirely.
		BatchBytes:   int64(cfg.MaxMessageBytes),
		BatchTimeout: time.Millisecond,
		WriteTimeout: 30 * time.Second,
		ReadTimeout:  30 * time.Second,
		Compression:  kafkago.Lz4,
		Transport:    transport,
	}
	return &Producer{
		cfg:    cfg,
		writer: w,
		client: &kafkago.Client{Addr: w.Addr, Timeout: 30 * time.Second, Transport: transport},
		topics: map[string]bool{},
		parts:  map[string]cachedCount{},
	}, nil
}

// Client exposes the admin client (topic metadata, offsets).
func (p *Producer) Client() *kafkago.Client { return p.client }

// EnsureTopics creates the topics that do not exist yet.
func (p *Producer) EnsureTopics(ctx context.Context, topics ...string) error {
	p.mu.Lock()
	var missing []kafkago.TopicConfig
	for _, t := range topics {
		if !p.topics[t] {
			missing = append(missing, kafkago.TopicConfig{Topic: t, NumPartitions: p.cfg.Partitions, ReplicationFactor: p.cfg.ReplicationFactor})
		}
	}
	p.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	resp, err := p.client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: missing})
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for topic, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafkago.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", topic, terr)
		}
	}
	// Creation is asynchronous on the broker: wait until every new topic has
	// leaders for its partitions, or the first write fails with
	// UnknownTopicOrPartition.
	for _, t := range missing {
		if err := p.waitTopic(ctx, t.Topic); err != nil {
			return err
		}
	}
	p.mu.Lock()
	for _, t := range missing {
		p.topics[t.Topic] = true
	}
	p.mu.Unlock()
	return nil
}

func (p *Producer) waitTopic(ctx context.Context, topic string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := p.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
		if err == nil {
			for _, t := range md.Topics {
				if t.Name == topic && t.Error == nil && len(t.Partitions) > 0 && leadersKnown(t.Partitions) {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topic %s has no leader 30s after its creation (last error: %v)", topic, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func leadersKnown(ps []kafkago.Partition) bool {
	for _, p := range ps {
		if p.Error != nil || p.Leader.Host == "" {
			return false
		}
	}
	return true
}

// Publish implements pipeline.Publisher. A record flagged AllPartitions
// (a truncate marker) is written once to every partition of its topic, in
// the same WriteMessages call as the records around it, so each partition
// keeps it in place.
func (p *Producer) Publish(ctx context.Context, records []pipeline.Record) error {
	var topics []string
	seen := map[string]bool{}
	for i := range records {
		r := &records[i]
		if size := recordSize(r); size > p.cfg.MaxMessageBytes {
			*r = p.deadLetter(*r, fmt.Sprintf("event of %d bytes is larger than the limit of %d bytes (SCOOP_KAFKA_MAX_MESSAGE_BYTES; the broker's max.message.bytes must be at least as large)", size, p.cfg.MaxMessageBytes))
		}
		if !seen[r.Topic] {
			seen[r.Topic] = true
			topics = append(topics, r.Topic)
		}
	}
	if err := p.EnsureTopics(ctx, topics...); err != nil {
		return err
	}
	msgs, err := messages(records, func(topic string) (int, error) { return p.partitionCount(ctx, topic) })
	if err != nil {
		return err
	}
	// Temporary failures (leader elections, a broker restarting) are retried
	// with backoff for up to a minute; a retry may duplicate records, which
	// at-least-once delivery allows. Anything else stops the pipeline.
	backoff := pipeline.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		err := p.writer.WriteMessages(ctx, msgs...)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !temporary(err) || time.Now().After(deadline) {
			return fmt.Errorf("write to kafka: %w", err)
		}
		if err := pipeline.Sleep(ctx, backoff.Next()); err != nil {
			return err
		}
	}
}

// temporary reports whether a write error may go away by itself.
func temporary(err error) bool {
	var kerr kafkago.Error
	if errors.As(err, &kerr) {
		return kerr.Temporary() || kerr == kafkago.UnknownTopicOrPartition
	}
	var werr kafkago.WriteErrors
	if errors.As(err, &werr) {
		for _, e := range werr {
			if e != nil && !temporary(e) {
				return false
			}
		}
		return true
	}
	var nerr interface{ Timeout() bool }
	if errors.As(err, &nerr) {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// recordSize is a record's size in a batch, with room for the framing.
func recordSize(r *pipeline.Record) int {
	n := len(r.Key) + len(r.Value) + 128
	for k, v := range r.Headers {
		n += len(k) + len(v) + 8
	}
	return n
}

// deadLetter replaces an unpublishable record by a dead-letter record with
// the reason, the original topic and key (the value is left out: it is what
// could not be published).
func (p *Producer) deadLetter(r pipeline.Record, reason string) pipeline.Record {
	return pipeline.Record{
		Topic: p.cfg.DLQTopic,
		Key:   r.Key,
		Value: nil,
		Time:  r.Time,
		Headers: map[string]string{
			"scoop.error":          reason,
			"scoop.original.topic": r.Topic,
			"scoop.stage":          "source",
			"scoop.value.bytes":    strconv.Itoa(len(r.Value)),
		},
	}
}

// Close flushes and closes the writer, giving up when ctx ends.
func (p *Producer) Close(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- p.writer.Close() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("close kafka producer: %w", ctx.Err())
	}
}
