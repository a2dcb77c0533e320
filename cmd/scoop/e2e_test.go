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
	kafkago "github.com/segmentio/kafka-go"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

type e2e struct {
	prefix, slot, keyspace string
	env                    []string
}

func newE2E(t *testing.T, mappings string) *e2e {
	testenv.Require(t)
	e := &e2e{prefix: testenv.Name("p"), slot: testenv.Name("s"), keyspace: testenv.Name("ks")}
	testenv.DropSlot(t, e.slot)
	// Reverse flows (direction both) keep a slot in the service database.
	t.Cleanup(func() { dropReverseSlots(e.slot) })
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

// dropReverseSlots drops the service database's slots of a test's reverse
// flows, waiting for scoop's walsender to let go of them.
func dropReverseSlots(slot string) {
	c, err := pgx.Connect(context.Background(), testenv.PGURL("service"))
	if err != nil {
		return
	}
	defer c.Close(context.Background())
	for i := 0; i < 50; i++ {
		var left int
		err := c.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT CASE WHEN active THEN 1 ELSE (SELECT 0 FROM pg_drop_replication_slot(slot_name)) END AS busy
			FROM pg_replication_slots WHERE slot_name LIKE $1 || '\_rev\_%') s WHERE s.busy = 1`, slot).Scan(&left)
		if err == nil && left == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
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

func waitEqual(t *testing.T, d *proc, what string, want func() []string, got func() []string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		w, g := want(), got()
		if strings.Join(w, "\n") == strings.Join(g, "\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: service store did not converge: %d rows at source, %d in store\n%s\nscoop log tail:\n%s",
				what, len(w), len(g), rowDiff(w, g), tail(d.logs(), 3000))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// rowDiff names the first rows that only one side has.
func rowDiff(want, got []string) string {
	in := func(rows []string) map[string]bool {
		m := make(map[string]bool, len(rows))
		for _, r := range rows {
			m[r] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	only := func(label string, rows []string, other map[string]bool) {
		n := 0
		for _, r := range rows {
			if !other[r] {
				if n < 10 {
					fmt.Fprintf(&b, "%s: %s\n", label, r)
				}
				n++
			}
		}
		if n > 10 {
			fmt.Fprintf(&b, "%s: ... %d in all\n", label, n)
		}
	}
	only("only at source", want, g)
	only("only in store ", got, w)
	return b.String()
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

// lazyCassandra returns a session to keyspace, opened on the first call that
// finds Cassandra (and the keyspace) there; nil until then.
func lazyCassandra(t *testing.T, keyspace string) func() *gocql.Session {
	var s *gocql.Session
	return func() *gocql.Session {
		if s != nil {
			return s
		}
		cl := gocql.NewCluster("127.0.0.1")
		fmt.Sscan(testenv.CassandraPort, &cl.Port)
		cl.Keyspace = keyspace
		cl.Timeout = 5 * time.Second
		cl.ReconnectInterval = time.Second // back soon after a test stopped Cassandra
		sess, err := cl.CreateSession()
		if err != nil {
			return nil
		}
		t.Cleanup(sess.Close)
		s = sess
		return s
	}
}

// cassandraRows reads id and amount of the orders copy as sorted text.
func cassandraRows(t *testing.T, keyspace, table string) func() []string {
	session := lazyCassandra(t, keyspace)
	return func() []string {
		s := session()
		if s == nil {
			return nil
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
	d := startProc(t, e.env)
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
	// The service row's commit carries the monolith's commit time (the sink
	// sets it on its replication origin).
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = 'stamped' WHERE id = 2`, schema.QuoteIdent(orders)))
	waitEqual(t, d, "stamped", pgOrders(t, "monolith", orders), pgOrders(t, "service", orders+"_copy"))
	var src, dst time.Time
	mono.QueryRow(context.Background(), fmt.Sprintf(`SELECT pg_xact_commit_timestamp(xmin) FROM %s WHERE id = 2`, schema.QuoteIdent(orders))).Scan(&src)
	svc.QueryRow(context.Background(), fmt.Sprintf(`SELECT pg_xact_commit_timestamp(xmin) FROM %s WHERE id = 2`, schema.QuoteIdent(orders+"_copy"))).Scan(&dst)
	if !src.Equal(dst) {
		t.Fatalf("service commit time %s, monolith commit time %s", dst, src)
	}
}

// TestSinkKilledMidBatch: scoop is killed with SIGKILL while the sinks apply
// a stream of inserts; after restarts the service tables equal the source
// (a trigger counts the re-applications of repeated source events).
func TestSinkKilledMidBatch(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	svc := testenv.Conn(t, "service")
	table := testenv.Name("kill")
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text)`, schema.QuoteIdent(table)))
	// The service table exists already, with a column counting upserts that
	// hit an existing row: an insert applied twice would count 1.
	testenv.Exec(t, svc, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, amount numeric(12,2), note text, reapplied int NOT NULL DEFAULT 0);
		CREATE FUNCTION %[2]s() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.reapplied := OLD.reapplied + 1; RETURN NEW; END $$;
		CREATE TRIGGER count_reapply BEFORE UPDATE ON %[1]s FOR EACH ROW EXECUTE FUNCTION %[2]s()`, schema.QuoteIdent(table), schema.QuoteIdent(table+"_fn")))
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: kill-pg\n    source: public.%[1]s\n    store: accounts\n  - name: kill-cass\n    source: public.%[1]s\n    store: orders\n", table))
	w := backgroundWriter(t, 10*time.Millisecond, func(ctx context.Context, c *pgx.Conn, i int) error {
		next := 1 + 100*i
		_, err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO %s SELECT g, g / 2.0, 'n' || g FROM generate_series(%d, %d) g`, schema.QuoteIdent(table), next, next+99))
		return err
	})
	d := startProc(t, e.env)
	time.Sleep(3 * time.Second)
	d.kill()
	d = startProc(t, e.env)
	time.Sleep(2 * time.Second)
	d.kill()
	d = startProc(t, e.env)
	time.Sleep(time.Second)
	w.stop()
	waitEqual(t, d, "killed -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	waitEqual(t, d, "killed -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))
	var total, reapplied int
	svc.QueryRow(context.Background(), fmt.Sprintf(`SELECT count(*), count(*) FILTER (WHERE reapplied > 0) FROM %s`, schema.QuoteIdent(table))).Scan(&total, &reapplied)
	// A change the source publishes again after a SIGKILL (everything after
	// the slot's confirmed position) is applied again, idempotently: a sink
	// never skips by source position, which would drop a change that a
	// failed Kafka write left out of order (pipeline/doc.go). What a sink
	// committed is never applied again from Kafka (its offsets); the
	// conformance suite checks that exactly.
	t.Logf("%d rows after two SIGKILLs; %d re-applied from repeated source events", total, reapplied)
}

// TestStoreOutage: the service PostgreSQL refuses connections, then
// Cassandra is stopped, each for a while under writes; the other mapping
// keeps flowing and both catch up fully.
func TestStoreOutage(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table := testenv.Name("outage")
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text)`, schema.QuoteIdent(table)))
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: out-pg\n    source: public.%[1]s\n    store: accounts\n  - name: out-cass\n    source: public.%[1]s\n    store: orders\n", table))
	d := startProc(t, e.env)
	next := 1
	write := func(n int) {
		for i := 0; i < n; i++ {
			testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g FROM generate_series(%d, %d) g`, schema.QuoteIdent(table), next, next+49))
			testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = 'u' WHERE id = %d`, schema.QuoteIdent(table), next))
			next += 50
			time.Sleep(50 * time.Millisecond)
		}
	}
	write(5)
	waitEqual(t, d, "before outage", pgOrders(t, "monolith", table), pgOrders(t, "service", table))

	// The service PostgreSQL goes away: no new sessions, existing ones cut.
	admin := testenv.Conn(t, "monolith")
	testenv.Exec(t, admin, `ALTER DATABASE service ALLOW_CONNECTIONS false`)
	t.Cleanup(func() { admin.Exec(context.Background(), `ALTER DATABASE service ALLOW_CONNECTIONS true`) })
	testenv.Exec(t, admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'service' AND pid <> pg_backend_pid()`)
	write(20)
	// Cassandra kept flowing meanwhile.
	waitEqual(t, d, "Cassandra during the PostgreSQL outage", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))
	time.Sleep(2 * time.Second)
	testenv.Exec(t, admin, `ALTER DATABASE service ALLOW_CONNECTIONS true`)
	waitEqual(t, d, "PostgreSQL after its outage", pgOrders(t, "monolith", table), pgOrders(t, "service", table))

	// Cassandra goes away.
	if err := testenv.Stack("down", "cassandra"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.Stack("up", "cassandra") })
	write(20)
	waitEqual(t, d, "PostgreSQL during the Cassandra outage", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	if err := testenv.Stack("up", "cassandra"); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, d, "Cassandra after its outage", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))
	if !strings.Contains(d.logs(), "mapping paused") && !strings.Contains(d.logs(), "store unavailable") {
		t.Fatalf("no pause was logged:\n%s", tail(d.logs(), 3000))
	}
}

// TestDeadLetters: an event Cassandra cannot hold goes to the dead-letter
// topic with its reason and origin, and the rows after it still arrive.
func TestDeadLetters(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table := testenv.Name("dlq")
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text, at timestamptz)`, schema.QuoteIdent(table)))
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: dlq-cass\n    source: public.%s\n    store: orders\n", table))
	d := startProc(t, e.env)
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (1, 1, 'ok', now()), (2, 2, 'poison', 'infinity'), (3, 3, 'ok', now())`, schema.QuoteIdent(table)))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (4, 4, 'after', now())`, schema.QuoteIdent(table)))
	waitEqual(t, d, "good rows", func() []string { return []string{"1|1.00|ok", "3|3.00|ok", "4|4.00|after"} }, cassandraRows(t, e.keyspace, table))
	msgs, h := deadLetter(t, e.prefix+".dlq")
	if string(msgs[0].Key) != `{"id":2}` || h["scoop.mapping"] != "dlq-cass" || h["scoop.original.topic"] != e.prefix+".public."+table ||
		!strings.Contains(h["scoop.error"], `column "at": timestamp "infinity" cannot be stored in Cassandra`) || h["scoop.original.offset"] == "" {
		t.Fatalf("dead letter key %s headers %v", msgs[0].Key, h)
	}
}

// TestOversizedEventDeadLettered: an event larger than the Kafka limit goes
// to the dead-letter topic with its reason; the stream goes on.
func TestOversizedEventDeadLettered(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table := testenv.Name("big")
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text)`, schema.QuoteIdent(table)))
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: big\n    source: public.%s\n    store: accounts\n", table))
	d := startProc(t, append(e.env, "SCOOP_KAFKA_MAX_MESSAGE_BYTES=20000"))
	waitReady(t, d)
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (1, 1, 'small')`, schema.QuoteIdent(table)))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (2, 2, repeat('x', 50000))`, schema.QuoteIdent(table)))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (3, 3, 'after')`, schema.QuoteIdent(table)))
	waitEqual(t, d, "small rows", func() []string { return []string{"1|1.00|small", "3|3.00|after"} }, pgOrders(t, "service", table))
	msgs, h := deadLetter(t, e.prefix+".dlq")
	if string(msgs[0].Key) != `{"id":2}` || h["scoop.original.topic"] != e.prefix+".public."+table || h["scoop.stage"] != "source" ||
		!strings.Contains(h["scoop.error"], "is larger than the limit of 20000 bytes (SCOOP_KAFKA_MAX_MESSAGE_BYTES") {
		t.Fatalf("dead letter key %s headers %v", msgs[0].Key, h)
	}
}

// TestPreconditionStopsDaemon: a slot that vanished after its snapshot makes
// scoop exit non-zero at once with the fix in the message, not hang.
func TestPreconditionStopsDaemon(t *testing.T) {
	table := createTable(t, 3)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: pre\n    source: public.%s\n    store: accounts\n", table))
	d := startProc(t, e.env)
	waitReady(t, d)
	d.cmd.Process.Signal(sigterm)
	d.cmd.Wait()
	testenv.Exec(t, testenv.Conn(t, "monolith"), `SELECT pg_drop_replication_slot($1)`, e.slot)
	d = startProc(t, e.env)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(d.logs(), fmt.Sprintf(`replication slot %q is missing although its tables were snapshotted before`, e.slot)) {
			t.Fatalf("exit %v\n%s", err, d.logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("scoop did not stop on a lost slot\n%s", d.logs())
	}
}

// deadLetter reads the one dead letter of a topic and its headers.
func deadLetter(t *testing.T, topic string) ([]kafkago.Message, map[string]string) {
	t.Helper()
	msgs := testenv.ReadTopic(t, topic, 1, 30*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("%d dead letters, want 1", len(msgs))
	}
	h := map[string]string{}
	for _, x := range msgs[0].Headers {
		h[x.Key] = string(x.Value)
	}
	return msgs, h
}

// TestColumnTypeConversion: columns.types converts a column the same way in
// both stores.
func TestColumnTypeConversion(t *testing.T) {
	table := createTable(t, 20)
	e := newE2E(t, fmt.Sprintf(`mappings:
  - name: conv-pg
    source: public.%[1]s
    store: accounts
    columns: {types: {amount: text, id: bigint}}
  - name: conv-cass
    source: public.%[1]s
    store: orders
    columns: {types: {amount: double precision}, exclude: [secret]}
`, table))
	d := startProc(t, e.env)
	waitEqual(t, d, "converted -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	svc := testenv.Conn(t, "service")
	var amountType, idType, amount string
	svc.QueryRow(context.Background(), `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'amount'`, schema.QuoteIdent(table)).Scan(&amountType)
	svc.QueryRow(context.Background(), `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'id'`, schema.QuoteIdent(table)).Scan(&idType)
	svc.QueryRow(context.Background(), fmt.Sprintf(`SELECT amount FROM %s WHERE id = 3`, schema.QuoteIdent(table))).Scan(&amount)
	if amountType != "text" || idType != "bigint" || amount != "3.00" {
		t.Fatalf("PostgreSQL target: amount %s %q, id %s", amountType, amount, idType)
	}
	s := cassandraSession(t, e.keyspace)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var v float64
		err := s.Query(fmt.Sprintf(`SELECT amount FROM %s WHERE id = 3`, schema.QuoteIdent(table))).Scan(&v)
		if err == nil && v == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Cassandra amount as double: %v %v\n%s", v, err, tail(d.logs(), 2000))
		}
		time.Sleep(300 * time.Millisecond)
	}
}
