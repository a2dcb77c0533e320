package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// recorder is a real Kafka producer that notes, in the order published, the
// topic, key and source.snapshot of every record.
type recorder struct {
	pub  pipeline.Publisher
	mu   sync.Mutex
	seen []marked
}

type marked struct{ topic, key, snapshot string }

func (r *recorder) Publish(ctx context.Context, recs []pipeline.Record) error {
	if err := r.pub.Publish(ctx, recs); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		var v struct {
			Source struct {
				Snapshot string `json:"snapshot"`
			} `json:"source"`
		}
		json.Unmarshal(rec.Value, &v)
		r.seen = append(r.seen, marked{rec.Topic, string(rec.Key), v.Source.Snapshot})
	}
	return nil
}

func (r *recorder) records() []marked {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]marked(nil), r.seen...)
}

// TestSnapshotMarkers: the snapshot marks its rows as Debezium does: the
// first row handed over "first", the last "last", every other table's first
// and last rows "first_in_data_collection" and "last_in_data_collection"
// (a one-row table's row is its last), the rest "true"; with two workers
// reading four tables (one of one row, one empty) in chunks of 7 rows.
func TestSnapshotMarkers(t *testing.T) {
	// Two workers; in the second case one row and empty tables, so that the
	// worker that finishes last has mostly read empty tables.
	for _, sizes := range [][]int{{25, 1, 0, 13}, {1, 0, 0, 0, 0, 0}, {0, 1, 0, 0, 0, 0}} {
		t.Run(fmt.Sprint(sizes), func(t *testing.T) { snapshotMarkers(t, sizes) })
	}
}

func snapshotMarkers(t *testing.T, sizes []int) {
	c := testenv.Conn(t, "monolith")
	var tables []postgres.TableName
	total := 0
	for _, n := range sizes {
		tbl, name := newTable(t, `CREATE TABLE %s (id int PRIMARY KEY)`)
		t.Cleanup(func() { testenv.Exec(t, testenv.Conn(t, "monolith"), `DROP TABLE IF EXISTS `+schema.QuoteIdent(name)) })
		testenv.Exec(t, c, fmt.Sprintf(`INSERT INTO %s SELECT generate_series(1, %d)`, schema.QuoteIdent(name), n))
		tables = append(tables, tbl)
		total += n
	}
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	producer, err := kafka.NewProducer(kafka.Config{Brokers: []string{testenv.Broker()}, Partitions: 1, DLQTopic: prefix + ".dlq"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { producer.Close(context.Background()) })
	rec := &recorder{pub: producer}
	startSource(t, prefix, slot, tables, rec, func(c *postgres.SourceConfig) { c.SnapshotWorkers, c.SnapshotChunkRows = 2, 7 })
	deadline := time.Now().Add(60 * time.Second)
	for len(rec.records()) < total {
		if time.Now().After(deadline) {
			t.Fatalf("%d snapshot rows published, want %d", len(rec.records()), total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := rec.records()
	if len(seen) != total {
		t.Fatalf("%d records published, want the %d snapshot rows", len(seen), total)
	}
	// What each row must be marked, from the order the rows were handed over.
	count, at := map[string]int{}, map[string]int{}
	for _, m := range seen {
		count[m.topic]++
	}
	var got, want []string
	for i, m := range seen {
		at[m.topic]++
		w := schema.SnapshotTrue
		switch {
		case i == len(seen)-1:
			w = schema.SnapshotLast
		case i == 0:
			w = schema.SnapshotFirst
		case at[m.topic] == count[m.topic]:
			w = schema.SnapshotLastInTable
		case at[m.topic] == 1:
			w = schema.SnapshotFirstInTable
		}
		got = append(got, fmt.Sprintf("%s %s %s", m.topic, m.key, m.snapshot))
		want = append(want, fmt.Sprintf("%s %s %s", m.topic, m.key, w))
	}
	if g, w := strings.Join(got, "\n"), strings.Join(want, "\n"); g != w {
		t.Fatalf("snapshot markers in the order published:\n%s\nwant:\n%s", g, w)
	}
	// Each table's rows come in key order from the one worker that read it.
	for _, m := range seen {
		at[m.topic]--
		if want := fmt.Sprintf(`{"id":%d}`, count[m.topic]-at[m.topic]); m.key != want {
			t.Fatalf("%s: key %s, want %s", m.topic, m.key, want)
		}
	}
	t.Logf("%d rows of %d tables marked as Debezium marks them", total, len(sizes))
}
