package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// running is a source + forwarder + Kafka producer running in-process
// against the real servers.
type running struct {
	source *postgres.Source
	prefix string
	slot   string
	cancel context.CancelFunc
	done   chan error
}

type option func(*postgres.SourceConfig)

func startSource(t *testing.T, prefix, slot string, tables []postgres.TableName, pub pipeline.Publisher, opts ...option) *running {
	t.Helper()
	producer, err := kafka.NewProducer(kafka.Config{Brokers: []string{testenv.Broker()}, Partitions: 3, DLQTopic: prefix + ".dlq"})
	if err != nil {
		t.Fatal(err)
	}
	if pub == nil {
		pub = producer
	}
	cfg := postgres.SourceConfig{
		URL: testenv.PGURL("monolith"), Slot: slot, Publication: slot, Tables: tables,
		Topic:             func(s, t string) string { return pipeline.TopicFor(prefix, s, t) },
		Encoding:          schema.EncoderConfig{Name: prefix, Version: "test"},
		HeartbeatInterval: time.Second, StatusInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	src, err := postgres.NewSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	items := make(chan pipeline.Item, 1024)
	r := &running{source: src, prefix: prefix, slot: slot, cancel: cancel, done: make(chan error, 2)}
	report := func(what string, err error) {
		if err != nil && ctx.Err() == nil {
			t.Errorf("%s stopped: %v", what, err)
		}
		r.done <- err
	}
	go func() { report("source", src.Run(ctx, items)) }()
	go func() { report("forwarder", pipeline.Forward(ctx, pipeline.ForwarderConfig{}, items, pub, src.Ack)) }()
	t.Cleanup(func() {
		r.stop()
		producer.Close(context.Background())
	})
	return r
}

func (r *running) stop() {
	if r.cancel != nil {
		r.cancel()
		r.cancel = nil
		<-r.done
		<-r.done
	}
}

// event is the decoded envelope.
type event struct {
	Before    map[string]json.RawMessage `json:"before"`
	After     map[string]json.RawMessage `json:"after"`
	Op        string                     `json:"op"`
	Unchanged []string                   `json:"unchanged"`
	Source    struct {
		Snapshot string `json:"snapshot"`
		LSN      uint64 `json:"lsn"`
		TxID     uint64 `json:"txId"`
		Table    string `json:"table"`
	} `json:"source"`
	key string
}

func decode(t *testing.T, msgs []kafkago.Message) []event {
	t.Helper()
	var out []event
	for _, m := range msgs {
		if m.Value == nil {
			continue // tombstone
		}
		var e event
		if err := json.Unmarshal(m.Value, &e); err != nil {
			t.Fatalf("bad event %s: %v", m.Value, err)
		}
		e.key = string(m.Key)
		out = append(out, e)
	}
	return out
}

func waitEvents(t *testing.T, topic string, n int) []event {
	t.Helper()
	msgs := testenv.ReadTopic(t, topic, n, 60*time.Second)
	evs := decode(t, msgs)
	if len(msgs) < n {
		t.Fatalf("topic %s: got %d messages, want at least %d", topic, len(msgs), n)
	}
	return evs
}

func newTable(t *testing.T, ddl string) (postgres.TableName, string) {
	t.Helper()
	name := testenv.Name("t")
	c := testenv.Conn(t, "monolith")
	testenv.Exec(t, c, fmt.Sprintf(ddl, schema.QuoteIdent(name)))
	return postgres.TableName{Schema: "public", Name: name}, name
}

func TestMain(m *testing.M) { testenv.Main(m) }

func TestSnapshotThenStream(t *testing.T) {
	tbl, name := newTable(t, `CREATE TABLE %s (id int PRIMARY KEY, v text)`)
	c := testenv.Conn(t, "monolith")
	testenv.Exec(t, c, fmt.Sprintf(`INSERT INTO %s SELECT g, 'row'||g FROM generate_series(1, 25) g`, schema.QuoteIdent(name)))
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	startSource(t, prefix, slot, []postgres.TableName{tbl}, nil, func(c *postgres.SourceConfig) { c.SnapshotChunkRows = 7 })
	topic := pipeline.TopicFor(prefix, "public", name)
	evs := waitEvents(t, topic, 25)
	marks := map[string]int{}
	for _, e := range evs {
		if e.Op != "r" {
			t.Fatalf("snapshot event: op %s snapshot %s", e.Op, e.Source.Snapshot)
		}
		marks[e.Source.Snapshot]++
	}
	// One table: its first row is the snapshot's first, its last the last.
	if fmt.Sprint(marks) != "map[first:1 last:1 true:23]" {
		t.Fatalf("snapshot markers %v, want first:1 last:1 true:23", marks)
	}
	testenv.Exec(t, c, fmt.Sprintf(`INSERT INTO %s VALUES (100, 'new')`, schema.QuoteIdent(name)))
	testenv.Exec(t, c, fmt.Sprintf(`UPDATE %s SET v = 'changed' WHERE id = 1`, schema.QuoteIdent(name)))
	testenv.Exec(t, c, fmt.Sprintf(`DELETE FROM %s WHERE id = 2`, schema.QuoteIdent(name)))
	msgs := testenv.ReadTopic(t, topic, 25+4, 30*time.Second)
	evs = decode(t, msgs)
	ops := map[string]int{}
	for _, e := range evs {
		ops[e.Op]++
	}
	if ops["r"] != 25 || ops["c"] != 1 || ops["u"] != 1 || ops["d"] != 1 || len(msgs) != 29 {
		t.Fatalf("ops %v, %d messages (want 25 r, 1 c, 1 u, 1 d and a tombstone)", ops, len(msgs))
	}
	for _, m := range msgs {
		if m.Value == nil && string(m.Key) != `{"id":2}` {
			t.Fatalf("tombstone with key %s", m.Key)
		}
	}
	// The slot is confirmed past the delete once Kafka has it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var behind bool
		if err := c.QueryRow(context.Background(), `SELECT confirmed_flush_lsn < pg_current_wal_lsn() - 1000000 FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&behind); err != nil {
			t.Fatal(err)
		}
		if !behind {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slot not confirmed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func keysOf(evs []event) []string {
	var ks []string
	for _, e := range evs {
		ks = append(ks, e.key)
	}
	sort.Strings(ks)
	return ks
}

var _ = strings.Join
var _ = keysOf
