package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// TestReplaySnapshotKeepsSlot: `replay --snapshot` of the only copied table
// keeps the slot, so rows deleted while scoop was stopped are deleted in the
// store too (no ghost rows from a recreated slot).
func TestReplaySnapshotKeepsSlot(t *testing.T) {
	table := createTable(t, 100)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: only\n    source: public.%s\n    store: accounts\n", table))
	mono := testenv.Conn(t, "monolith")
	d := startProc(t, e.env)
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = 'changed' WHERE id <= 10`, schema.QuoteIdent(table)))
	waitEqual(t, d, "before replay", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	d.cmd.Process.Signal(sigterm)
	d.cmd.Wait()

	// Deleted while scoop is stopped: only the slot still carries these.
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id > 80`, schema.QuoteIdent(table)))
	if out, err := e.cli(t, "replay", "only", "--snapshot", "--wait", "0"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	d = startProc(t, e.env)
	waitReady(t, d)
	if logs := d.logs(); strings.Contains(logs, "created replication slot") || strings.Contains(logs, "dropping slot") {
		t.Fatalf("replay --snapshot recreated the slot:\n%s", tail(logs, 3000))
	}
	waitEqual(t, d, "after replay --snapshot", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
}

// TestInstanceWithoutStoreKeepsSharedSource: an instance lacking a store's
// URL (say, an old one during a rolling deploy that adds the store) leaves
// that mapping's table in the shared publication and keeps streaming its
// changes to Kafka; an instance that has the URL then fills the store.
func TestInstanceWithoutStoreKeepsSharedSource(t *testing.T) {
	served, other := createTable(t, 5), createTable(t, 5)
	e := newE2E(t, "mappings: []\n")
	file := writeMappings(t, fmt.Sprintf("mappings:\n  - name: served\n    source: public.%s\n    store: accounts\n  - name: other\n    source: public.%s\n    store: orders\n", served, other))
	if out, err := e.cli(t, "mappings", "apply", "-f", file); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	os.Unsetenv("SCOOP_STORE_ORDERS_URL") // set by cli; t.Setenv restores it at the end
	var env []string
	for _, kv := range e.withoutFile() {
		if !strings.HasPrefix(kv, "SCOOP_STORE_ORDERS_URL=") {
			env = append(env, kv)
		}
	}
	d := startProc(t, env)
	waitReady(t, d)
	if !strings.Contains(d.logs(), "mapping skipped") {
		t.Fatalf("the mapping without a store URL was not reported:\n%s", tail(d.logs(), 3000))
	}
	mono := testenv.Conn(t, "monolith")
	rows, err := mono.Query(context.Background(), `SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY tablename`, e.slot)
	if err != nil {
		t.Fatal(err)
	}
	published, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{served, other}
	sort.Strings(want)
	if strings.Join(published, " ") != strings.Join(want, " ") {
		t.Fatalf("publication %s holds %v, want %v", e.slot, published, want)
	}
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'late' FROM generate_series(101, 105) g`, schema.QuoteIdent(other)))
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id = 1`, schema.QuoteIdent(other)))
	waitEqual(t, d, "served store", pgOrders(t, "monolith", served), pgOrders(t, "service", served))
	// The unserved table's changes reach Kafka from this instance.
	topic := pipeline.TopicFor(e.prefix, "public", other)
	keys := map[string]bool{}
	for _, m := range testenv.ReadTopic(t, topic, 5+6, 60*time.Second) {
		keys[string(m.Key)] = true
	}
	for id := 101; id <= 105; id++ {
		if !keys[fmt.Sprintf(`{"id":%d}`, id)] {
			t.Fatalf("insert of id %d in the unserved table not in Kafka (keys %v)\n%s", id, keys, tail(d.logs(), 3000))
		}
	}
	d.cmd.Process.Signal(sigterm)
	d.cmd.Wait()
	// An instance with the store's URL applies everything.
	d = startProc(t, e.withoutFile())
	waitEqual(t, d, "store added later", pgOrders(t, "monolith", other), cassandraRows(t, e.keyspace, other))
}
