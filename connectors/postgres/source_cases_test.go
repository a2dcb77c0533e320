package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

func q(name string) string { return schema.QuoteIdent(name) }

// TestAllTypes: every type family decodes the same in the snapshot and in
// the stream, and matches the golden event.
func TestAllTypes(t *testing.T) {
	c := testenv.Conn(t, "monolith")
	name := testenv.Name("types")
	sql, err := os.ReadFile(filepath.Join(testenv.Root(), "testdata", "sql", "all_types.sql"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, c, strings.ReplaceAll(string(sql), "{{table}}", q(name)))
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	startSource(t, prefix, slot, []postgres.TableName{{Schema: "public", Name: name}}, nil)
	topic := pipeline.TopicFor(prefix, "public", name)
	waitEvents(t, topic, 1)
	testenv.Exec(t, c, fmt.Sprintf(`CREATE TEMP TABLE x AS SELECT * FROM %s; UPDATE x SET id = 2; INSERT INTO %s SELECT * FROM x`, q(name), q(name)))
	evs := waitEvents(t, topic, 2)
	var snap, live map[string]json.RawMessage
	for _, e := range evs {
		switch e.Op {
		case "r":
			snap = e.After
		case "c":
			live = e.After
		}
	}
	if snap == nil || live == nil {
		t.Fatalf("want a snapshot and an insert event, got %+v", evs)
	}
	live["id"] = snap["id"]
	a, _ := json.Marshal(snap)
	b, _ := json.Marshal(live)
	if !bytes.Equal(a, b) {
		t.Fatalf("snapshot and stream differ:\nsnapshot %s\nstream   %s", a, b)
	}
	var pretty bytes.Buffer
	json.Indent(&pretty, a, "", "  ")
	pretty.WriteByte('\n')
	golden := filepath.Join(testenv.Root(), "testdata", "golden", "all_types.after.json")
	if os.Getenv("SCOOP_UPDATE_GOLDEN") != "" {
		os.WriteFile(golden, pretty.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, pretty.Bytes()) {
		t.Fatalf("all-types event differs from %s:\n%s", golden, pretty.Bytes())
	}
}

// TestSnapshotSeam writes to the table while it is being snapshotted: for
// every key the versions seen in Kafka strictly increase (nothing applied
// twice at the seam) and the last one is the row's final state (nothing lost).
func TestSnapshotSeam(t *testing.T) {
	tbl, name := newTable(t, `CREATE TABLE %s (id int PRIMARY KEY, version int NOT NULL)`)
	c := testenv.Conn(t, "monolith")
	testenv.Exec(t, c, fmt.Sprintf(`INSERT INTO %s SELECT g, 0 FROM generate_series(1, 20000) g`, q(name)))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		w := testenv.Conn(t, "monolith")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := 1 + (i*7919)%20000
			if _, err := w.Exec(context.Background(), fmt.Sprintf(`UPDATE %s SET version = version + 1 WHERE id = $1`, q(name)), id); err != nil {
				t.Error(err)
				return
			}
			if i%10 == 0 {
				w.Exec(context.Background(), fmt.Sprintf(`INSERT INTO %s VALUES ($1, 0)`, q(name)), 20000+i)
			}
			if i%13 == 0 {
				w.Exec(context.Background(), fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, q(name)), 1+(i*31)%20000)
			}
			writes.Add(1)
		}
	}()
	time.Sleep(100 * time.Millisecond) // writes before, during and after the snapshot
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	startSource(t, prefix, slot, []postgres.TableName{tbl}, nil, func(c *postgres.SourceConfig) { c.SnapshotChunkRows = 500 })
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if writes.Load() < 100 {
		t.Fatalf("only %d concurrent writes", writes.Load())
	}
	// Final state of the table.
	want := map[string]int{}
	rows, err := c.Query(context.Background(), fmt.Sprintf(`SELECT id, version FROM %s`, q(name)))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, v int
		rows.Scan(&id, &v)
		want[fmt.Sprintf(`{"id":%d}`, id)] = v
	}
	rows.Close()
	var wantLSN string
	c.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&wantLSN)
	topic := pipeline.TopicFor(prefix, "public", name)
	// Wait until the stream caught up with the writer: every final row seen.
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, lastVersion := foldVersions(t, decode(t, testenv.ReadTopic(t, topic, 1, time.Second)))
		if len(got) == len(want) {
			ok := true
			for k, v := range want {
				if got[k] != v {
					ok = false
					break
				}
			}
			if ok {
				_ = lastVersion
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream did not converge: %d keys in Kafka, %d in table", len(got), len(want))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// foldVersions applies events in order per key and fails when a key's
// version goes backwards or repeats (a change applied twice).
func foldVersions(t *testing.T, evs []event) (map[string]int, map[string]int) {
	t.Helper()
	state := map[string]int{}
	last := map[string]int{}
	for _, e := range evs {
		switch e.Op {
		case "d":
			delete(state, e.key)
			last[e.key] = -1
		default:
			var v int
			json.Unmarshal(e.After["version"], &v)
			if prev, seen := last[e.key]; seen && prev >= 0 && v <= prev {
				t.Fatalf("key %s: version %d after %d (op %s): applied twice or out of order", e.key, v, prev, e.Op)
			}
			last[e.key] = v
			state[e.key] = v
		}
	}
	return state, last
}

// TestUnchangedToast: an UPDATE that leaves a large out-of-line value alone
// marks it unchanged instead of sending NULL or a placeholder.
func TestUnchangedToast(t *testing.T) {
	tbl, name := newTable(t, `CREATE TABLE %s (id int PRIMARY KEY, n int, big text)`)
	c := testenv.Conn(t, "monolith")
	testenv.Exec(t, c, fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN big SET STORAGE EXTERNAL`, q(name)))
	// The row is read by the snapshot; once its event is in Kafka the slot
	// exists, so the update is streamed (a sleep instead raced the slot's
	// creation under load, and the snapshot then read the updated row).
	testenv.Exec(t, c, fmt.Sprintf(`INSERT INTO %s VALUES (1, 1, repeat('x', 100000))`, q(name)))
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	startSource(t, prefix, slot, []postgres.TableName{tbl}, nil)
	topic := pipeline.TopicFor(prefix, "public", name)
	waitEvents(t, topic, 1)
	testenv.Exec(t, c, fmt.Sprintf(`UPDATE %s SET n = 2 WHERE id = 1`, q(name)))
	evs := waitEvents(t, topic, 2)
	upd := evs[len(evs)-1]
	if upd.Op != "u" {
		t.Fatalf("last event op %s", upd.Op)
	}
	if _, present := upd.After["big"]; present {
		t.Fatalf("unchanged TOAST column sent in after: %s", upd.After["big"])
	}
	if len(upd.Unchanged) != 1 || upd.Unchanged[0] != "big" {
		t.Fatalf("unchanged = %v, want [big]", upd.Unchanged)
	}
	if string(upd.After["n"]) != "2" {
		t.Fatalf("n = %s", upd.After["n"])
	}
}

// TestSchemaChanges: events after ADD/DROP/ALTER TYPE/RENAME carry the new
// shape and nothing around the change is lost.
func TestSchemaChanges(t *testing.T) {
	tbl, name := newTable(t, `CREATE TABLE %s (id int PRIMARY KEY, a int, b text)`)
	c := testenv.Conn(t, "monolith")
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	startSource(t, prefix, slot, []postgres.TableName{tbl}, nil)
	topic := pipeline.TopicFor(prefix, "public", name)
	time.Sleep(500 * time.Millisecond)
	steps := []string{
		`INSERT INTO %s VALUES (1, 1, 'one')`,
		`ALTER TABLE %s ADD COLUMN c jsonb DEFAULT '{"x":1}'`,
		`INSERT INTO %s VALUES (2, 2, 'two')`,
		`ALTER TABLE %s DROP COLUMN b`,
		`INSERT INTO %s VALUES (3, 3)`,
		`ALTER TABLE %s ALTER COLUMN a TYPE numeric(10,2)`,
		`INSERT INTO %s VALUES (4, 4.5)`,
		`ALTER TABLE %s RENAME COLUMN a TO amount`,
		`INSERT INTO %s VALUES (5, 5.25)`,
	}
	for _, s := range steps {
		testenv.Exec(t, c, fmt.Sprintf(s, q(name)))
	}
	evs := waitEvents(t, topic, 5)
	// jsonb is its text as a JSON string, as Debezium writes it.
	want := []string{
		`{"a":1,"b":"one","id":1}`,
		`{"a":2,"b":"two","c":"{\"x\": 1}","id":2}`,
		`{"a":3,"c":"{\"x\": 1}","id":3}`,
		`{"a":"4.50","c":"{\"x\": 1}","id":4}`,
		`{"amount":"5.25","c":"{\"x\": 1}","id":5}`,
	}
	if len(evs) != len(want) {
		t.Fatalf("got %d events, want %d", len(evs), len(want))
	}
	byID := map[string]string{}
	for _, e := range evs {
		b, _ := json.Marshal(e.After)
		byID[string(e.After["id"])] = string(b)
	}
	for i, w := range want {
		if got := byID[fmt.Sprint(i+1)]; got != w {
			t.Errorf("row %d: got %s, want %s", i+1, got, w)
		}
	}
}

// TestAbortedAndSavepoints: rolled-back transactions and savepoints never
// reach Kafka.
func TestAbortedAndSavepoints(t *testing.T) {
	tbl, name := newTable(t, `CREATE TABLE %s (id int PRIMARY KEY)`)
	c := testenv.Conn(t, "monolith")
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	startSource(t, prefix, slot, []postgres.TableName{tbl}, nil)
	topic := pipeline.TopicFor(prefix, "public", name)
	time.Sleep(500 * time.Millisecond)
	testenv.Exec(t, c, fmt.Sprintf(`BEGIN; INSERT INTO %[1]s VALUES (1); ROLLBACK`, q(name)))
	testenv.Exec(t, c, fmt.Sprintf(`BEGIN; INSERT INTO %[1]s VALUES (2); SAVEPOINT a; INSERT INTO %[1]s VALUES (3); ROLLBACK TO SAVEPOINT a; INSERT INTO %[1]s VALUES (4); COMMIT`, q(name)))
	testenv.Exec(t, c, fmt.Sprintf(`INSERT INTO %s VALUES (5)`, q(name)))
	evs := waitEvents(t, topic, 3)
	time.Sleep(500 * time.Millisecond)
	evs = decode(t, testenv.ReadTopic(t, topic, 3, time.Second))
	got := keysOf(evs)
	if strings.Join(got, " ") != `{"id":2} {"id":4} {"id":5}` {
		t.Fatalf("keys %v, want ids 2, 4, 5", got)
	}
}

// TestOwnWritesSkipped: a transaction under scoop's replication origin is
// not captured.
func TestOwnWritesSkipped(t *testing.T) {
	tbl, name := newTable(t, `CREATE TABLE %s (id int PRIMARY KEY)`)
	c := testenv.Conn(t, "monolith")
	// An origin of this test's own (sinks of other tests may hold "scoop").
	origin := testenv.Name("origin")
	testenv.Exec(t, c, `SELECT pg_replication_origin_create($1)`, origin)
	t.Cleanup(func() { c.Exec(context.Background(), `SELECT pg_replication_origin_drop($1)`, origin) })
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	startSource(t, prefix, slot, []postgres.TableName{tbl}, nil, func(c *postgres.SourceConfig) { c.Origin = origin })
	topic := pipeline.TopicFor(prefix, "public", name)
	time.Sleep(500 * time.Millisecond)
	o := testenv.Conn(t, "monolith")
	testenv.Exec(t, o, `SELECT pg_replication_origin_session_setup($1)`, origin)
	testenv.Exec(t, o, fmt.Sprintf(`INSERT INTO %s VALUES (1)`, q(name)))
	testenv.Exec(t, o, `SELECT pg_replication_origin_session_reset()`)
	testenv.Exec(t, c, fmt.Sprintf(`INSERT INTO %s VALUES (2)`, q(name)))
	waitEvents(t, topic, 1)
	time.Sleep(500 * time.Millisecond)
	evs := decode(t, testenv.ReadTopic(t, topic, 1, time.Second))
	if got := keysOf(evs); strings.Join(got, " ") != `{"id":2}` {
		t.Fatalf("keys %v: the write under scoop's origin was captured", got)
	}
}

// gate is a real Kafka producer whose acknowledgements can be held back.
type gate struct {
	pub    pipeline.Publisher
	mu     sync.Mutex
	closed bool
	wait   chan struct{}
}

func (g *gate) Publish(ctx context.Context, recs []pipeline.Record) error {
	g.mu.Lock()
	w := g.wait
	g.mu.Unlock()
	if w != nil {
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.pub.Publish(ctx, recs)
}

func slotLSN(t *testing.T, slot string) uint64 {
	t.Helper()
	c := testenv.Conn(t, "monolith")
	var lsn uint64
	if err := c.QueryRow(context.Background(), `SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// TestAckAfterKafka: while Kafka has not acknowledged a transaction, the
// slot is not confirmed past it, keepalives notwithstanding.
func TestAckAfterKafka(t *testing.T) {
	tbl, name := newTable(t, `CREATE TABLE %s (id int PRIMARY KEY)`)
	c := testenv.Conn(t, "monolith")
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	kp := newProducer(t, prefix)
	g := &gate{pub: kp}
	startSource(t, prefix, slot, []postgres.TableName{tbl}, g)
	time.Sleep(1500 * time.Millisecond)
	g.mu.Lock()
	g.wait = make(chan struct{})
	g.mu.Unlock()
	var commitLSN uint64
	testenv.Exec(t, c, fmt.Sprintf(`INSERT INTO %s VALUES (1)`, q(name)))
	c.QueryRow(context.Background(), `SELECT (pg_current_wal_lsn() - '0/0')::int8`).Scan(&commitLSN)
	// Heartbeats and keepalives flow for three seconds.
	time.Sleep(3 * time.Second)
	if got := slotLSN(t, slot); got >= commitLSN {
		t.Fatalf("slot confirmed to %d, past the unpublished commit at %d", got, commitLSN)
	}
	close(g.wait)
	deadline := time.Now().Add(10 * time.Second)
	for slotLSN(t, slot) < commitLSN {
		if time.Now().After(deadline) {
			t.Fatal("slot not confirmed after Kafka acknowledged")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(testenv.ReadTopic(t, pipeline.TopicFor(prefix, "public", name), 1, 10*time.Second)); n != 1 {
		t.Fatalf("%d events", n)
	}
}

// TestHeartbeatAdvancesIdleSlot: with the mapped table idle and another
// table busy, retained WAL stays bounded.
func TestHeartbeatAdvancesIdleSlot(t *testing.T) {
	tbl, _ := newTable(t, `CREATE TABLE %s (id int PRIMARY KEY)`)
	_, busy := newTable(t, `CREATE TABLE %s (id serial PRIMARY KEY, pad text)`)
	c := testenv.Conn(t, "monolith")
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	startSource(t, prefix, slot, []postgres.TableName{tbl}, nil)
	time.Sleep(time.Second)
	for i := 0; i < 20; i++ {
		testenv.Exec(t, c, fmt.Sprintf(`INSERT INTO %s (pad) SELECT repeat('x', 500) FROM generate_series(1, 2000)`, q(busy)))
	}
	var written uint64
	c.QueryRow(context.Background(), `SELECT (pg_current_wal_lsn() - '0/0')::int8`).Scan(&written)
	deadline := time.Now().Add(15 * time.Second)
	for {
		var retained int64
		c.QueryRow(context.Background(), `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::int8 FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&retained)
		if slotLSN(t, slot) >= written {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle slot retains %d bytes of WAL", retained)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestPreconditions: scoop refuses to start, saying what to change.
func TestPreconditions(t *testing.T) {
	c := testenv.Conn(t, "monolith")
	_, nokey := newTable(t, `CREATE TABLE %s (v text)`)
	role := testenv.Name("norepl")
	testenv.Exec(t, c, fmt.Sprintf(`CREATE ROLE %s LOGIN`, q(role)))
	t.Cleanup(func() { c.Exec(context.Background(), fmt.Sprintf(`DROP ROLE %s`, q(role))) })
	cases := []struct {
		name   string
		url    string
		tables []postgres.TableName
		want   string
	}{
		{"no key", testenv.PGURL("monolith"), []postgres.TableName{{Schema: "public", Name: nokey}},
			fmt.Sprintf(`source precondition: table public.%s has no primary key and no replica identity, so its updates and deletes cannot be keyed; add a primary key, or run ALTER TABLE "public".%s REPLICA IDENTITY FULL`, nokey, q(nokey))},
		{"missing table", testenv.PGURL("monolith"), []postgres.TableName{{Schema: "public", Name: "no_such_table"}},
			`source precondition: table public.no_such_table does not exist in the monolith; create it or fix the mapping's source`},
		{"no replication", fmt.Sprintf("postgres://%s@127.0.0.1:%s/monolith", role, testenv.PGPort), nil,
			fmt.Sprintf(`source precondition: role %q lacks the REPLICATION attribute; run ALTER ROLE %s WITH REPLICATION as a superuser`, role, q(role))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := runOnce(t, tc.url, testenv.Name("s"), tc.tables)
			if !errors.Is(err, postgres.ErrPrecondition) || err.Error() != tc.want {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

func runOnce(t *testing.T, url, slot string, tables []postgres.TableName) error {
	return runFor(t, url, slot, tables, 20*time.Second)
}

// runFor runs a source for at most d, its items taken as if published.
func runFor(t *testing.T, url, slot string, tables []postgres.TableName, d time.Duration) error {
	t.Helper()
	src, err := postgres.NewSource(postgres.SourceConfig{URL: url, Slot: slot, Publication: slot, Tables: tables,
		Topic: func(s, t string) string { return s + "." + t }})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	items := make(chan pipeline.Item, 16)
	go func() {
		for it := range items {
			if it.Barrier != nil {
				close(it.Barrier)
			}
			if it.Mark != 0 {
				src.Ack(it.Mark)
			}
		}
	}()
	defer close(items)
	return src.Run(ctx, items)
}

// TestRefusesWithoutLogicalWAL runs against a server with wal_level=replica.
func TestRefusesWithoutLogicalWAL(t *testing.T) {
	c := testenv.NewCluster(t, "wal_level=replica")
	err := runOnce(t, c.URL("postgres"), "s", nil)
	want := `source precondition: wal_level is "replica"; set wal_level = logical in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

// TestRefusesLostSlot: a slot invalidated by max_slot_wal_keep_size is
// reported, never silently recreated.
func TestRefusesLostSlot(t *testing.T) {
	c := testenv.NewCluster(t, "wal_level=logical", "max_slot_wal_keep_size=1MB", "max_wal_size=32MB", "min_wal_size=32MB")
	conn, err := pgx.Connect(context.Background(), c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	testenv.Exec(t, conn, `CREATE TABLE t (id int PRIMARY KEY)`)
	tables := []postgres.TableName{{Schema: "public", Name: "t"}}
	if err := runFor(t, c.URL("postgres"), "lost", tables, 3*time.Second); err != context.DeadlineExceeded {
		t.Fatalf("first run: %v", err)
	}
	testenv.Exec(t, conn, `CREATE TABLE filler (pad text)`)
	var status string
	for i := 0; i < 20 && status != "lost"; i++ {
		testenv.Exec(t, conn, `INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 5000)`)
		testenv.Exec(t, conn, `SELECT pg_switch_wal()`)
		testenv.Exec(t, conn, `CHECKPOINT`)
		conn.QueryRow(context.Background(), `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = 'lost'`).Scan(&status)
	}
	if status != "lost" {
		t.Fatalf("slot not invalidated (wal_status %q)", status)
	}
	err = runOnce(t, c.URL("postgres"), "lost", tables)
	want := `source precondition: replication slot "lost" was invalidated (wal_status = lost): the WAL it needed is gone and changes since its last confirmed position cannot be recovered. Scoop will not silently recreate it. To start over with a fresh snapshot: SELECT pg_drop_replication_slot('lost'); DELETE FROM scoop.source_tables WHERE slot = 'lost'; DELETE FROM scoop.source_slots WHERE slot = 'lost'; then restart scoop (consider raising max_slot_wal_keep_size)`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

// TestMissingSlotAfterSnapshot: a slot that vanished after its snapshot is
// never silently recreated.
func TestMissingSlotAfterSnapshot(t *testing.T) {
	tbl, _ := newTable(t, `CREATE TABLE %s (id int PRIMARY KEY)`)
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	r := startSource(t, prefix, slot, []postgres.TableName{tbl}, nil)
	c := testenv.Conn(t, "monolith")
	waitSnapshotted(t, c, slot)
	r.stop()
	// The server's walsender lets go of the slot a moment after the source
	// stopped.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var active bool
		if err := c.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active); err != nil {
			t.Fatal(err)
		}
		if !active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s still active 30 s after the source stopped", slot)
		}
		time.Sleep(20 * time.Millisecond)
	}
	testenv.Exec(t, c, `SELECT pg_drop_replication_slot($1)`, slot)
	err := runOnce(t, testenv.PGURL("monolith"), slot, []postgres.TableName{tbl})
	want := fmt.Sprintf(`source precondition: replication slot %q is missing although its tables were snapshotted before (was it dropped, or did the database fail over?); changes since then cannot be recovered. To start over with a fresh snapshot: DELETE FROM scoop.source_tables WHERE slot = '%s'; DELETE FROM scoop.source_slots WHERE slot = '%s'; then restart scoop`, slot, slot, slot)
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

func waitSnapshotted(t *testing.T, c *pgx.Conn, slot string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		c.QueryRow(context.Background(), `SELECT count(*) FROM scoop.source_tables WHERE slot = $1`, slot).Scan(&n)
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("snapshot not recorded")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newProducer(t *testing.T, prefix string) *kafka.Producer {
	p, err := kafka.NewProducer(kafka.Config{Brokers: []string{testenv.Broker()}, Partitions: 3, DLQTopic: prefix + ".dlq"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}
