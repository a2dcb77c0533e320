package servicewriter

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gocql/gocql"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// Config configures a Writer.
type Config struct {
	// Brokers are Kafka's bootstrap addresses (host:port), as scoop's
	// SCOOP_KAFKA_BROKERS.
	Brokers []string
	// TopicPrefix is scoop's SCOOP_TOPIC_PREFIX ("scoop" by default there).
	TopicPrefix string
	// Mapping is the name of the scoop mapping (direction: both) whose
	// store is this table.
	Mapping string
	// Session is the service's Cassandra session. The writer uses its
	// consistency (LOCAL_QUORUM or stronger is advised) and never closes it.
	Session *gocql.Session
	// Keyspace and Table name the service's table (case-sensitive, as
	// system_schema spells them).
	Keyspace, Table string
	// Transport reaches Kafka over TLS and/or SASL (its TLS and SASL
	// fields); nil is plaintext.
	Transport *kafkago.Transport
	// Partitions and ReplicationFactor are used if the writer creates the
	// reverse topic: give scoop's SCOOP_TOPIC_PARTITIONS (default 3) and
	// the cluster's replication factor (default -1: the broker's).
	Partitions, ReplicationFactor int
	// Clock gives write times (default time.Now). See docs/servicewriter.md
	// for what last-writer-wins asks of it.
	Clock func() time.Time
}

var topicRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)

// Validate fills the defaults and names the field at fault.
func (c *Config) Validate() error {
	var bad []string
	if len(c.Brokers) == 0 {
		bad = append(bad, "Brokers is empty (give Kafka's bootstrap addresses, e.g. 127.0.0.1:9092)")
	}
	if c.TopicPrefix == "" {
		bad = append(bad, "TopicPrefix is empty (give scoop's SCOOP_TOPIC_PREFIX, \"scoop\" by default)")
	}
	if c.Mapping == "" {
		bad = append(bad, "Mapping is empty (give the name of the scoop mapping with direction: both)")
	} else if topic := pipeline.ReverseTopic(c.TopicPrefix, &pipeline.Mapping{Name: c.Mapping}); c.TopicPrefix != "" && !topicRe.MatchString(topic) {
		bad = append(bad, fmt.Sprintf("TopicPrefix and Mapping make the topic name %q, which Kafka refuses (letters, digits, '.', '_', '-'; at most 249)", topic))
	}
	if c.Session == nil {
		bad = append(bad, "Session is nil (give the service's gocql session)")
	}
	if c.Keyspace == "" || c.Table == "" {
		bad = append(bad, "Keyspace and Table must both be set")
	}
	if c.Partitions < 0 {
		bad = append(bad, "Partitions is negative (0 means 3, scoop's default)")
	}
	if len(bad) > 0 {
		return errors.New("servicewriter: " + strings.Join(bad, "; "))
	}
	if c.Partitions == 0 {
		c.Partitions = 3
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// ErrStoreWrite marks an error of the Cassandra write that follows a
// published event: the change is in the event log and scoop's reverse flow
// writes it into Cassandra (and the monolith) at the same timestamp, so it
// is not lost; only this call could not wait for it. See IsPublished.
var ErrStoreWrite = errors.New("published, but the Cassandra write failed (scoop's reverse flow will write the row)")

// IsPublished reports whether err, returned by Upsert or Delete, came after
// the event was published: the change will reach every store.
func IsPublished(err error) bool { return errors.Is(err, ErrStoreWrite) }

// Writer writes a service's rows to Cassandra through the event log.
type Writer struct {
	cfg    Config
	topic  string
	table  *table
	kafka  *kafkago.Writer
	client *kafkago.Client

	clockMu sync.Mutex
	last    int64 // last timestamp given, µs

	topicMu    sync.Mutex
	topicReady bool

	seed  maphash.Seed
	lanes [64]sync.Mutex // one key's writes publish one at a time
}

// New reads the table's columns (refusing types it cannot carry, see
// Supported) and returns a Writer. It does not contact Kafka: the first
// write does, and creates the reverse topic if it is missing.
func New(ctx context.Context, cfg Config) (*Writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t, err := describe(ctx, cfg.Session, cfg.Keyspace, cfg.Table)
	if err != nil {
		return nil, fmt.Errorf("servicewriter: mapping %s: %w", cfg.Mapping, err)
	}
	var transport kafkago.RoundTripper = kafkago.DefaultTransport
	if cfg.Transport != nil {
		transport = cfg.Transport
	}
	addr := kafkago.TCP(cfg.Brokers...)
	return &Writer{
		cfg:   cfg,
		topic: pipeline.ReverseTopic(cfg.TopicPrefix, &pipeline.Mapping{Name: cfg.Mapping}),
		table: t,
		kafka: &kafkago.Writer{
			Addr: addr,
			// scoop's producer places records by key with Murmur2 (the
			// Java client's partitioner): one key, one partition.
			Balancer:     &kafkago.Murmur2Balancer{},
			RequiredAcks: kafkago.RequireAll,
			MaxAttempts:  5,
			BatchTimeout: time.Millisecond,
			WriteTimeout: 10 * time.Second,
			ReadTimeout:  10 * time.Second,
			Transport:    transport,
		},
		client: &kafkago.Client{Addr: addr, Timeout: 10 * time.Second, Transport: transport},
		seed:   maphash.MakeSeed(),
	}, nil
}

// Topic is the reverse topic the writer publishes to.
func (w *Writer) Topic() string { return w.topic }

// Upsert inserts or replaces a whole row: row must name every column of
// the table, in the service's column names (nil for NULL). The event's op
// is "u" (the writer does not read the row first; scoop applies c and u
// alike, as an upsert).
func (w *Writer) Upsert(ctx context.Context, row map[string]any) error {
	cells, err := w.table.cells(row, false)
	if err != nil {
		return fmt.Errorf("servicewriter: upsert into %s.%s: %w", w.table.keyspace, w.table.name, err)
	}
	return w.write(ctx, schema.OpUpdate, cells)
}

// Delete deletes the row whose primary key is key (exactly the key
// columns).
func (w *Writer) Delete(ctx context.Context, key map[string]any) error {
	cells, err := w.table.cells(key, true)
	if err != nil {
		return fmt.Errorf("servicewriter: delete from %s.%s: %w", w.table.keyspace, w.table.name, err)
	}
	return w.write(ctx, schema.OpDelete, cells)
}

func (w *Writer) write(ctx context.Context, op schema.Op, cells []cell) error {
	var ts int64
	var key []byte
	if err := func() error {
		// The timestamp is taken under the key's lane, so one key's events
		// reach its partition in timestamp order even when several
		// goroutines write it.
		probe := w.table.appendObject(nil, cells[:w.table.nkeys])
		lane := &w.lanes[maphash.Bytes(w.seed, probe)%uint64(len(w.lanes))]
		lane.Lock()
		defer lane.Unlock()
		ts = w.nextTimestamp()
		var value []byte
		key, value = w.table.event(op, cells, ts, w.cfg.TopicPrefix, time.Now())
		return w.publish(ctx, kafkago.Message{Topic: w.topic, Key: key, Value: value, Time: time.UnixMicro(ts)})
	}(); err != nil {
		return fmt.Errorf("servicewriter: publish to %s (nothing was written to Cassandra): %w", w.topic, err)
	}
	stmt, args := w.statement(op, cells, ts)
	if err := w.cfg.Session.Query(stmt, args...).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("servicewriter: key %s at %d: %w: %w", key, ts, ErrStoreWrite, err)
	}
	return nil
}

// nextTimestamp is the clock in µs, strictly above the last one given.
func (w *Writer) nextTimestamp() int64 {
	w.clockMu.Lock()
	defer w.clockMu.Unlock()
	ts := w.cfg.Clock().UnixMicro()
	if ts <= w.last {
		ts = w.last + 1
	}
	w.last = ts
	return ts
}

// statement is the CQL of a change, at the event's timestamp: the same
// write scoop's Cassandra sink makes of the event.
func (w *Writer) statement(op schema.Op, cells []cell, ts int64) (string, []any) {
	t := w.table
	args := make([]any, 0, len(cells)+1)
	if op == schema.OpDelete {
		where := make([]string, t.nkeys)
		args = append(args, ts)
		for i, c := range t.cols[:t.nkeys] {
			where[i] = schema.QuoteIdent(c.name) + " = ?"
			args = append(args, cells[i].cql)
		}
		return "DELETE FROM " + t.quoted + " USING TIMESTAMP ? WHERE " + strings.Join(where, " AND "), args
	}
	names := make([]string, len(cells))
	marks := make([]string, len(cells))
	for i, c := range t.cols {
		names[i] = schema.QuoteIdent(c.name)
		marks[i] = "?"
		args = append(args, cells[i].cql)
	}
	args = append(args, ts)
	return "INSERT INTO " + t.quoted + " (" + strings.Join(names, ", ") + ") VALUES (" + strings.Join(marks, ", ") + ") USING TIMESTAMP ?", args
}

func (w *Writer) publish(ctx context.Context, m kafkago.Message) error {
	if err := w.ensureTopic(ctx); err != nil {
		return err
	}
	return w.kafka.WriteMessages(ctx, m)
}

// ensureTopic creates the reverse topic if it does not exist (scoop creates
// it too, with the same settings, when it starts the reverse flow).
func (w *Writer) ensureTopic(ctx context.Context) error {
	w.topicMu.Lock()
	defer w.topicMu.Unlock()
	if w.topicReady {
		return nil
	}
	ready, err := w.topicHasLeaders(ctx)
	if err != nil {
		return err
	}
	if !ready {
		resp, err := w.client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
			Topic: w.topic, NumPartitions: w.cfg.Partitions, ReplicationFactor: w.cfg.ReplicationFactor,
		}}})
		if err != nil {
			return fmt.Errorf("create topic: %w", err)
		}
		if terr := resp.Errors[w.topic]; terr != nil && !errors.Is(terr, kafkago.TopicAlreadyExists) {
			return fmt.Errorf("create topic: %w", terr)
		}
		// Creation is asynchronous on the broker: wait for the leaders.
		deadline := time.Now().Add(30 * time.Second)
		for !ready {
			if time.Now().After(deadline) {
				return errors.New("the topic has no leader 30s after its creation")
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			if ready, err = w.topicHasLeaders(ctx); err != nil {
				return err
			}
		}
	}
	w.topicReady = true
	return nil
}

func (w *Writer) topicHasLeaders(ctx context.Context) (bool, error) {
	md, err := w.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{w.topic}})
	if err != nil {
		return false, fmt.Errorf("read the topic's metadata: %w", err)
	}
	for _, t := range md.Topics {
		if t.Name != w.topic || t.Error != nil || len(t.Partitions) == 0 {
			continue
		}
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return false, nil
			}
		}
		return true, nil
	}
	return false, nil
}

// Close releases the Kafka connections; call it after the last write
// returned. It leaves the gocql session open.
func (w *Writer) Close(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- w.kafka.Close() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("servicewriter: close: %w", ctx.Err())
	}
}
