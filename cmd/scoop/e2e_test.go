package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

type e2e struct {
	prefix, slot, keyspace string
	env                    []string
}

func newE2E(t *testing.T, mappings string) *e2e {
	e := &e2e{prefix: testenv.Name("p"), slot: testenv.Name("s"), keyspace: testenv.Name("ks")}
	testenv.DropSlot(t, e.slot)
	path := writeMappings(t, mappings)
	e.env = []string{
		"SCOOP_SOURCE_URL=" + testenv.PGURL("monolith"),
		"SCOOP_KAFKA_BROKERS=" + testenv.Broker(),
		"SCOOP_TOPIC_PREFIX=" + e.prefix, "SCOOP_SLOT=" + e.slot, "SCOOP_PUBLICATION=" + e.slot,
		"SCOOP_MAPPINGS_FILE=" + path,
		"SCOOP_STORE_ACCOUNTS_URL=" + testenv.PGURL("service"),
		"SCOOP_STORE_ORDERS_URL=cassandra://" + testenv.CassandraAddr() + "/" + e.keyspace,
		"SCOOP_ADMIN_ADDR=127.0.0.1:0",
		"SCOOP_HEARTBEAT_INTERVAL=500ms",
	}
	return e
}

// rowsJSON returns every row of a PostgreSQL table as JSON text, sorted.
func rowsJSON(t *testing.T, db, table string) []string {
	t.Helper()
	c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
	if err != nil {
		return nil
	}
	defer c.Close(context.Background())
	rows, err := c.Query(context.Background(), fmt.Sprintf(`SELECT to_jsonb(t)::text FROM %s t`, schema.QuoteIdent(table)))
	if err != nil {
		return nil
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func waitEqual(t *testing.T, d *daemon, what string, want func() []string, got func() []string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		w, g := want(), got()
		if strings.Join(w, "\n") == strings.Join(g, "\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: service store did not converge: %d rows at source, %d in store\nfirst source row: %v\nfirst store row:  %v\nscoop log tail:\n%s",
				what, len(w), len(g), first(w), first(g), tail(d.logs(), 3000))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return s[0]
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func cassandraSession(t *testing.T, keyspace string) *gocql.Session {
	t.Helper()
	cl := gocql.NewCluster("127.0.0.1")
	fmt.Sscan(testenv.CassandraPort, &cl.Port)
	cl.Keyspace = keyspace
	cl.Timeout = 10 * time.Second
	var s *gocql.Session
	var err error
	for i := 0; i < 60; i++ {
		if s, err = cl.CreateSession(); err == nil {
			t.Cleanup(s.Close)
			return s
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("cassandra session: %v", err)
	return nil
}

// cassandraRows reads id and amount of the orders copy as sorted text.
func cassandraRows(t *testing.T, keyspace, table string) func() []string {
	var s *gocql.Session
	return func() []string {
		if s == nil {
			cl := gocql.NewCluster("127.0.0.1")
			fmt.Sscan(testenv.CassandraPort, &cl.Port)
			cl.Keyspace = keyspace
			cl.Timeout = 5 * time.Second
			var err error
			if s, err = cl.CreateSession(); err != nil {
				s = nil
				return nil
			}
			t.Cleanup(s.Close)
		}
		iter := s.Query(fmt.Sprintf(`SELECT id, amount, note FROM %s`, schema.QuoteIdent(table))).Iter()
		var out []string
		var amt string
		var note *string
		m := map[string]any{}
		for iter.MapScan(m) {
			amt = fmt.Sprint(m["amount"])
			n := m["note"]
			if v, ok := n.(string); ok {
				note = &v
			} else {
				note = nil
			}
			line := fmt.Sprintf("%v|%s|", m["id"], amt)
			if note != nil {
				line += *note
			}
			out = append(out, line)
			m = map[string]any{}
		}
		if err := iter.Close(); err != nil {
			s.Close()
			s = nil
			return nil
		}
		sort.Strings(out)
		return out
	}
}

func pgOrders(t *testing.T, db, table string) func() []string {
	return func() []string {
		c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
		if err != nil {
			return nil
		}
		defer c.Close(context.Background())
		rows, err := c.Query(context.Background(), fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(note, '') FROM %s`, schema.QuoteIdent(table)))
		if err != nil {
			return nil
		}
		out, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		sort.Strings(out)
		return out
	}
}

// TestEndToEnd: monolith -> Kafka -> PostgreSQL service and Cassandra
// service, with the all-types table, updates, deletes and a TOAST update.
func TestEndToEnd(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	types := testenv.Name("types")
	orders := testenv.Name("orders")
	sql, err := os.ReadFile(filepath.Join(testenv.Root(), "testdata", "sql", "all_types.sql"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, mono, strings.ReplaceAll(string(sql), "{{table}}", schema.QuoteIdent(types)))
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text, secret text)`, schema.QuoteIdent(orders)))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g * 1.5, 'n' || g, 's' FROM generate_series(1, 500) g`, schema.QuoteIdent(orders)))
	e := newE2E(t, fmt.Sprintf(`mappings:
  - name: types-pg
    source: public.%[1]s
    store: accounts
  - name: orders-pg
    source: public.%[2]s
    store: accounts
    target: %[2]s_copy
    columns: {exclude: [secret]}
  - name: orders-cass
    source: public.%[2]s
    store: orders
    columns: {include: [id, amount, note]}
`, types, orders))
	d := startDaemon(t, e.env)
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET amount = amount + 1 WHERE id %% 3 = 0`, schema.QuoteIdent(orders)))
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id %% 7 = 0`, schema.QuoteIdent(orders)))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = repeat('long', 5000) WHERE id = 1`, schema.QuoteIdent(orders)))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET amount = 99 WHERE id = 1`, schema.QuoteIdent(orders)))
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TEMP TABLE x AS SELECT * FROM %[1]s; UPDATE x SET id = 2; INSERT INTO %[1]s SELECT * FROM x`, schema.QuoteIdent(types)))

	waitEqual(t, d, "all types -> PostgreSQL", func() []string { return rowsJSON(t, "monolith", types) }, func() []string { return rowsJSON(t, "service", types) })
	waitEqual(t, d, "orders -> PostgreSQL", pgOrders(t, "monolith", orders), pgOrders(t, "service", orders+"_copy"))
	waitEqual(t, d, "orders -> Cassandra", pgOrders(t, "monolith", orders), cassandraRows(t, e.keyspace, orders))
	// The excluded column never reached the service.
	var n int
	svc := testenv.Conn(t, "service")
	svc.QueryRow(context.Background(), `SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = 'secret'`, orders+"_copy").Scan(&n)
	if n != 0 {
		t.Fatal("excluded column secret exists in the service table")
	}
}
