package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/connectors/cassandra/servicewriter"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// loadWriter inserts a new row, then updates an older one, in its own
// transaction each, into table of db until a write is refused (or ctx
// ends, which is a failure: the fence never came). It counts the writes
// that committed.
type loadWriter struct {
	committed atomic.Int64
	refused   chan error
}

func startWriter(ctx context.Context, t *testing.T, db, table, col string, firstID int) *loadWriter {
	w := &loadWriter{refused: make(chan error, 1)}
	go func() {
		c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
		if err != nil {
			w.refused <- err
			return
		}
		defer c.Close(context.Background())
		q := schema.QuoteIdent(table)
		for id := firstID; ; id++ {
			if ctx.Err() != nil {
				w.refused <- fmt.Errorf("the %s writer was never refused (%d writes committed)", db, w.committed.Load())
				return
			}
			sql, args := fmt.Sprintf(`INSERT INTO %s (id, amount, %s) VALUES ($1::int, $1::int, $2)`, q, schema.QuoteIdent(col)), []any{id, fmt.Sprintf("%s-%d", db, id)}
			if id%2 == 1 {
				sql, args = fmt.Sprintf(`UPDATE %s SET %s = $2 WHERE id = $1`, q, schema.QuoteIdent(col)), []any{id - 1, fmt.Sprintf("%s-upd-%d", db, id)}
			}
			if _, err := c.Exec(context.Background(), sql, args...); err != nil {
				w.refused <- err
				return
			}
			w.committed.Add(1)
		}
	}()
	return w
}

// refusal waits for the writer's refused write (it comes at once after a
// fence) and checks its text.
func (w *loadWriter) refusal(t *testing.T, want ...string) {
	t.Helper()
	select {
	case err := <-w.refused:
		for _, s := range want {
			if !strings.Contains(err.Error(), s) {
				t.Fatalf("the refused write's error %q lacks %q", err, s)
			}
		}
		t.Logf("%d writes committed, then: %v", w.committed.Load(), err)
	case <-time.After(30 * time.Second):
		t.Fatal("the writer was not refused within 30s of the fence")
	}
}

// dropReverseSlot removes a reverse source's slot from the service
// database when the test ends (after the daemon, which is stopped first).
func dropReverseSlot(t *testing.T, slot string) {
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testenv.PGURL("service"))
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		for i := 0; i < 50; i++ {
			if _, err := c.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// syncBuffer is a bytes.Buffer read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hold says how flipHeld holds a flip's flow back.
type hold struct {
	// first is the progress the flip must show while the daemon is
	// stopped (SIGSTOP): ": source slot " when a slot must pass the fence,
	// ": consumer group " when there is none (a Cassandra service).
	first string
	// db.table, when set, is locked by the test so that the flow's sink
	// cannot apply: the flip must then show ": consumer group " after the
	// daemon went on, before the lock goes.
	db, table string
	// stopped runs while the daemon is stopped, before the flip starts.
	stopped func()
}

// flipHeld runs a flip while the test holds its flow back, so that each of
// the flip's waits is needed: the daemon is stopped until the flip shows
// h.first, and a lock keeps the sink from applying until it waits for the
// consumer group. A flip that stops waiting before is a failure.
func flipHeld(t *testing.T, e *e2e, d *proc, h hold, args ...string) (string, error) {
	t.Helper()
	for _, kv := range e.env {
		k, v, _ := strings.Cut(kv, "=")
		if k != "SCOOP_MAPPINGS_FILE" {
			t.Setenv(k, v)
		}
	}
	var tx pgx.Tx
	if h.table != "" {
		c := testenv.Conn(t, h.db)
		var err error
		if tx, err = c.Begin(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		if _, err := tx.Exec(context.Background(), fmt.Sprintf(`LOCK TABLE %s IN SHARE MODE`, schema.QuoteIdent(h.table))); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer d.cmd.Process.Signal(syscall.SIGCONT)
	if h.stopped != nil {
		h.stopped()
	}
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- runMain(append([]string{"mappings", "flip"}, args...), &out, &errOut) }()
	waitStage := func(held, line string) {
		waitFor(t, d, "the flip waiting for the "+held, 60*time.Second, func() (bool, string) {
			o := out.String()
			select {
			case code := <-done:
				t.Fatalf("the flip returned (exit %d) while the test held back the %s:\n%s%s", code, held, o, errOut.String())
			default:
			}
			if strings.Contains(o, "drained in ") {
				t.Fatalf("the flip stopped waiting while the test held back the %s:\n%s", held, o)
			}
			return strings.Contains(o, line), o
		})
	}
	waitStage("daemon", h.first)
	if err := d.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if tx != nil {
		waitStage("sink", ": consumer group ")
		tx.Rollback(context.Background())
	}
	select {
	case code := <-done:
		if code != 0 {
			return out.String(), fmt.Errorf("%s", strings.TrimSpace(strings.TrimPrefix(errOut.String(), "scoop: ")))
		}
		return out.String(), nil
	case <-time.After(2 * time.Minute):
		t.Fatalf("the flip did not return within 2 minutes of the flow's release:\n%s", out.String())
		return "", nil
	}
}

// TestFlipUnderLoad: a writer hammers the monolith table while it is
// flipped to the service; the flip returns only when every committed write
// is in the service table (read at once, no waiting; flipHeld holds
// the flow back until the flip waits for each stage), and the writer's
// next write fails naming the mapping. The service's writes then reach the
// monolith. The flip back, under a writer on the service table, returns
// only when every service write is in the monolith; the monolith is
// writable again, the service table refuses writes, and both converge.
func TestFlipUnderLoad(t *testing.T) {
	table := createTable(t, 20)
	svcTable := table + "_svc"
	e := newE2E(t, fmt.Sprintf(`mappings:
  - {name: cut, source: public.%s, store: accounts, target: %s, direction: both, conflict: last-writer-wins, columns: {rename: {note: remark}, exclude: [secret]}}
`, table, svcTable))
	dropReverseSlot(t, e.slot+"_rev_accounts")
	addr := freeAddr(t)
	d := startProc(t, setEnv(e.env, "SCOOP_ADMIN_ADDR", addr))
	mono := fmt.Sprintf(`SELECT id || '|' || amount::numeric(12,2)::text || '|' || coalesce(note, '') FROM %s`, schema.QuoteIdent(table))
	svc := fmt.Sprintf(`SELECT id || '|' || amount::numeric(12,2)::text || '|' || coalesce(remark, '') FROM %s`, schema.QuoteIdent(svcTable))
	waitEqual(t, d, "snapshot -> service", query(t, "monolith", mono), query(t, "service", svc))
	waitReverse(t, d, 1)
	if _, err := e.cli(t, "mappings", "flip", "cut", "--back"); err == nil || err.Error() != "mapping is not flipped: the monolith owns mapping cut's table public."+table+" already; to hand it to the service: scoop mappings flip cut" {
		t.Fatalf("--back before any flip: %v", err)
	}

	ctx, stop := context.WithTimeout(context.Background(), 2*time.Minute)
	defer stop()
	w := startWriter(ctx, t, "monolith", table, "note", 1000)
	waitFor(t, d, "the monolith writer going", 10*time.Second, func() (bool, string) { return w.committed.Load() > 200, fmt.Sprint(w.committed.Load()) })
	out, err := flipHeld(t, e, d, hold{first: ": source slot ", db: "service", table: svcTable}, "cut", "--timeout", "90s")
	t.Logf("scoop mappings flip cut:\n%s", out)
	if err != nil {
		t.Fatalf("flip: %v\nscoop log tail:\n%s", err, tail(d.logs(), 3000))
	}
	// Read at once: everything the monolith committed is in the service.
	if m, s := query(t, "monolith", mono)(), query(t, "service", svc)(); strings.Join(m, "\n") != strings.Join(s, "\n") {
		t.Fatalf("flip returned before the service had every write of the monolith (%d rows there, %d in the service):\n%s", len(m), len(s), rowDiff(m, s))
	}
	w.refusal(t, "mapping cut was flipped to the service", "scoop mappings flip cut --back")
	for _, want := range []string{"fenced public." + table + " in the monolith at ", "drained in ", "mapping cut flipped: the service (store accounts) owns " + svcTable} {
		if !strings.Contains(out, want) {
			t.Errorf("flip's output lacks %q", want)
		}
	}
	if _, err := e.cli(t, "mappings", "flip", "cut"); err == nil || !strings.HasPrefix(err.Error(), "mapping is already flipped: mapping cut was flipped to the service at ") || !strings.HasSuffix(err.Error(), "; to give it back to the monolith: scoop mappings flip cut --back") {
		t.Fatalf("second flip: %v", err)
	}
	m := testenv.Conn(t, "monolith")
	if _, err := m.Exec(context.Background(), fmt.Sprintf(`TRUNCATE %s`, schema.QuoteIdent(table))); err == nil || !strings.Contains(err.Error(), "mapping cut was flipped to the service") {
		t.Fatalf("TRUNCATE of the fenced monolith table: %v", err)
	}
	if list, _ := e.cli(t, "mappings", "list"); !strings.Contains(list, " service\n") {
		t.Errorf("mappings list does not name the service as owner:\n%s", list)
	}
	if js, _ := e.cli(t, "mappings", "describe", "cut"); !strings.Contains(js, `"owner": "service"`) {
		t.Errorf("mappings describe does not name the service as owner:\n%s", js)
	}
	var doc struct {
		Mappings map[string]struct{ Owner string }
	}
	if err := json.Unmarshal([]byte(status(t, addr, "--json")), &doc); err != nil || doc.Mappings["cut"].Owner != "service" {
		t.Errorf("status --json: owner of cut %q (%v)", doc.Mappings["cut"].Owner, err)
	}
	if table := status(t, addr); !strings.Contains(table, "owner of cut: service (flipped at ") {
		t.Errorf("status does not say the service owns cut:\n%s", table)
	}

	// The service writes; the monolith follows through the reverse flow.
	s := testenv.Conn(t, "service")
	testenv.Exec(t, s, fmt.Sprintf(`INSERT INTO %s (id, amount, remark) VALUES (1, 1, 'service owns it') ON CONFLICT (id) DO UPDATE SET remark = EXCLUDED.remark`, schema.QuoteIdent(svcTable)))
	testenv.Exec(t, s, fmt.Sprintf(`DELETE FROM %s WHERE id = 2`, schema.QuoteIdent(svcTable)))
	waitEqual(t, d, "service writes -> monolith", query(t, "service", svc), query(t, "monolith", mono))

	// Flip back under a writer on the service table.
	sw := startWriter(ctx, t, "service", svcTable, "remark", 100000)
	waitFor(t, d, "the service writer going", 10*time.Second, func() (bool, string) { return sw.committed.Load() > 200, fmt.Sprint(sw.committed.Load()) })
	out, err = flipHeld(t, e, d, hold{first: ": source slot ", db: "monolith", table: table}, "cut", "--back", "--timeout", "90s")
	t.Logf("scoop mappings flip cut --back:\n%s", out)
	if err != nil {
		t.Fatalf("flip back: %v\nscoop log tail:\n%s", err, tail(d.logs(), 3000))
	}
	if m, s := query(t, "monolith", mono)(), query(t, "service", svc)(); strings.Join(m, "\n") != strings.Join(s, "\n") {
		t.Fatalf("flip --back returned before the monolith had every write of the service (%d rows there, %d in the service):\n%s", len(m), len(s), rowDiff(s, m))
	}
	sw.refusal(t, "mapping cut was flipped back to the monolith", "scoop mappings flip cut`")
	if _, err := e.cli(t, "mappings", "flip", "cut", "--back"); err == nil || !strings.HasPrefix(err.Error(), "mapping is not flipped: ") {
		t.Fatalf("second flip --back: %v", err)
	}
	testenv.Exec(t, m, fmt.Sprintf(`UPDATE %s SET note = 'monolith owns it again' WHERE id = 1`, schema.QuoteIdent(table)))
	waitEqual(t, d, "monolith writes -> service", query(t, "monolith", mono), query(t, "service", svc))
	if list, _ := e.cli(t, "mappings", "list"); !strings.Contains(list, " monolith\n") {
		t.Errorf("mappings list does not name the monolith as owner:\n%s", list)
	}
}

// TestFlipRefusals: the flips that cannot start say why and what to do;
// a flip that cannot drain (no scoop running) times out naming what is
// pending and leaves the fence.
func TestFlipRefusals(t *testing.T) {
	a, b := createTable(t, 1), createTable(t, 1)
	e := newE2E(t, "mappings: []\n")
	file := writeMappings(t, fmt.Sprintf(`mappings:
  - {name: fwd, source: public.%s, store: accounts}
  - {name: two, source: public.%s, store: accounts, direction: both, conflict: last-writer-wins}
`, a, b))
	if _, err := e.cli(t, "mappings", "apply", "-f", file); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"flip", "nope"}, `no such mapping: "nope" (see scoop mappings list)`},
		{[]string{"flip"}, "usage: scoop mappings flip NAME [--back] [--timeout D]"},
		{[]string{"flip", "two", "--timeout", "0s"}, "scoop mappings flip: --timeout=0s: must be positive, e.g. 5m"},
		{[]string{"flip", "fwd"}, "mapping is not bidirectional: mapping fwd has direction forward, and only a mapping with direction: both can be flipped (the service's writes must flow back to the monolith); set direction: both and conflict: last-writer-wins for it in the mappings file, run `scoop mappings apply -f FILE`, let it settle (`scoop verify fwd`), then flip"},
		{[]string{"flip", "fwd", "--back"}, "mapping is not bidirectional: mapping fwd has direction forward"},
		{[]string{"flip", "two", "--back"}, "mapping is not flipped: the monolith owns mapping two's table public." + b + " already; to hand it to the service: scoop mappings flip two"},
	} {
		_, err := e.cli(t, append([]string{"mappings"}, c.args...)...)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("scoop mappings %s: %v\nwant: %s", strings.Join(c.args, " "), err, c.want)
		}
	}
	// A flip of the same mapping running elsewhere holds its lock.
	m := testenv.Conn(t, "monolith")
	testenv.Exec(t, m, `SELECT pg_advisory_lock(hashtext($1))`, "scoop.flip."+e.slot+".two")
	if _, err := e.cli(t, "mappings", "flip", "two", "--timeout", "1s"); err == nil || err.Error() != "another flip of the mapping is running: mapping two is being flipped by another scoop mappings flip (it holds the advisory lock hashtext('scoop.flip."+e.slot+".two') in the monolith); wait for it to end, or stop it" {
		t.Fatalf("flip while another runs: %v", err)
	}
	testenv.Exec(t, m, `SELECT pg_advisory_unlock(hashtext($1))`, "scoop.flip."+e.slot+".two")

	start := time.Now()
	_, err := e.cli(t, "mappings", "flip", "two", "--timeout", "1s")
	want := "flip not finished in time: mapping two: not drained within 1s (--timeout): still pending: source slot " + e.slot + ": read slot " + e.slot + ": replication slot does not exist (does scoop run and the mapping stream? see scoop status); public." + b + " stays fenced: run `scoop mappings flip two` again to keep waiting, or `scoop mappings flip two --back` to undo"
	if err == nil || err.Error() != want {
		t.Fatalf("flip with no scoop running: %v\nwant: %s", err, want)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a 1s timeout took %s", d)
	}
	if _, err := m.Exec(context.Background(), fmt.Sprintf(`DELETE FROM %s`, schema.QuoteIdent(b))); err == nil || !strings.Contains(err.Error(), "scoop: mapping two was flipped to the service (store accounts)") {
		t.Fatalf("write after a timed-out flip: %v", err)
	}
	if list, _ := e.cli(t, "mappings", "list"); !strings.Contains(list, " monolith\n") || strings.Contains(list, " service\n") {
		t.Errorf("a timed-out flip changed the owner:\n%s", list)
	}
}

// TestFlipCassandra: a mapping to a Cassandra service is flipped under a
// monolith writer (the flip waits for the slot while the daemon is
// stopped); the service's writes (servicewriter) reach the monolith. For
// the flip back the service stops writing first, as the runbook says: its
// last writes are published while the daemon is stopped, and --back
// returns only when the monolith has them; the monolith is writable again.
func TestFlipCassandra(t *testing.T) {
	table := createTable(t, 10)
	e := newE2E(t, fmt.Sprintf(`mappings:
  - {name: cass, source: public.%s, store: orders, direction: both, columns: {rename: {note: remark}, exclude: [secret]}}
`, table))
	d := startProc(t, e.env)
	mono := query(t, "monolith", fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(note, '-') FROM %s`, schema.QuoteIdent(table)))
	cass := cassandraRenamed(t, e.keyspace, table)
	waitEqual(t, d, "snapshot -> Cassandra", mono, cass)
	waitFor(t, d, "reverse flow started", 60*time.Second, func() (bool, string) { return strings.Contains(d.logs(), "reverse flow started"), "" })

	ctx, stop := context.WithTimeout(context.Background(), 2*time.Minute)
	defer stop()
	w := startWriter(ctx, t, "monolith", table, "note", 1000)
	waitFor(t, d, "the monolith writer going", 10*time.Second, func() (bool, string) { return w.committed.Load() > 100, fmt.Sprint(w.committed.Load()) })
	out, err := flipHeld(t, e, d, hold{first: ": source slot "}, "cass", "--timeout", "90s")
	t.Logf("scoop mappings flip cass:\n%s", out)
	if err != nil {
		t.Fatalf("flip: %v\nscoop log tail:\n%s", err, tail(d.logs(), 3000))
	}
	w.refusal(t, "mapping cass was flipped to the service (store orders)")
	waitEqual(t, d, "monolith writes -> Cassandra", mono, cass)

	session := cassandraSession(t, e.keyspace)
	sw, err := servicewriter.New(context.Background(), servicewriter.Config{
		Brokers: []string{testenv.Broker()}, TopicPrefix: e.prefix, Mapping: "cass",
		Session: session, Keyspace: e.keyspace, Table: table,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sw.Close(cctx)
	})
	write := func(from, to int) {
		for id := from; id < to; id++ {
			if err := sw.Upsert(context.Background(), map[string]any{"id": id, "amount": fmt.Sprintf("%d.00", id), "remark": fmt.Sprintf("service-%d", id)}); err != nil {
				t.Fatalf("servicewriter upsert %d: %v", id, err)
			}
		}
	}
	write(5000, 5050)
	waitEqual(t, d, "service writes -> monolith", cass, mono)

	// The service's last writes, published while the daemon is stopped:
	// the flip back must wait for them.
	out, err = flipHeld(t, e, d, hold{first: ": consumer group ", stopped: func() { write(6000, 6100) }}, "cass", "--back", "--timeout", "90s")
	t.Logf("scoop mappings flip cass --back:\n%s", out)
	if err != nil {
		t.Fatalf("flip back: %v\nscoop log tail:\n%s", err, tail(d.logs(), 3000))
	}
	if !strings.Contains(out, "store orders is Cassandra, which has no triggers: scoop cannot fence "+table+". The service must stop writing it NOW") {
		t.Errorf("--back did not tell that the Cassandra service must stop writing:\n%s", out)
	}
	if m, c := mono(), cass(); strings.Join(m, "\n") != strings.Join(c, "\n") {
		t.Fatalf("flip --back returned before the monolith had every write of the service (%d rows there, %d in Cassandra):\n%s", len(m), len(c), rowDiff(c, m))
	}
	testenv.Exec(t, testenv.Conn(t, "monolith"), fmt.Sprintf(`UPDATE %s SET note = 'monolith owns it again' WHERE id = 1`, schema.QuoteIdent(table)))
	waitEqual(t, d, "monolith writes -> Cassandra after the flip back", mono, cass)
}
