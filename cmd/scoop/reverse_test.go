package main

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// query returns the rows of sql in db, one text column each, sorted.
func query(t *testing.T, db, sql string) func() []string {
	return func() []string {
		c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		defer c.Close(context.Background())
		rows, err := c.Query(context.Background(), sql)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		sort.Strings(out)
		return out
	}
}

// waitReverse waits until the instance's reverse flows run as well: the
// sinks started and a reverse source streams from its slot (a service
// write before the slot exists is not captured).
func waitReverse(t *testing.T, d *proc, mappings int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(d.logs(), "reverse flow started") < mappings || !strings.Contains(d.logs(), "msg=streaming reverse_source=") {
		if time.Now().After(deadline) {
			t.Fatalf("reverse flows not running:\n%s", tail(d.logs(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReversePostgresRoundTrip: with direction both, the service's inserts,
// updates and deletes reach the monolith with the column renamed back and
// the excluded column left alone; the monolith's writes still reach the
// service; nothing that scoop applied is captured back.
func TestReversePostgresRoundTrip(t *testing.T) {
	table := createTable(t, 20)
	svcTable := table + "_svc"
	e := newE2E(t, fmt.Sprintf(`mappings:
  - name: rt
    source: public.%s
    store: accounts
    target: %s
    direction: both
    columns: {rename: {note: remark}, exclude: [secret], types: {amount: text}}
`, table, svcTable))
	d := startProc(t, e.env)
	mono := fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(note, '') FROM %s`, schema.QuoteIdent(table))
	svc := fmt.Sprintf(`SELECT id || '|' || amount::numeric(12,2)::text || '|' || coalesce(remark, '') FROM %s`, schema.QuoteIdent(svcTable))
	waitEqual(t, d, "snapshot -> service", query(t, "monolith", mono), query(t, "service", svc))
	waitReverse(t, d, 1)

	s := testenv.Conn(t, "service")
	testenv.Exec(t, s, fmt.Sprintf(`INSERT INTO %s (id, amount, remark) VALUES (1000, '5.50', 'from the service')`, schema.QuoteIdent(svcTable)))
	testenv.Exec(t, s, fmt.Sprintf(`UPDATE %s SET remark = 'edited', amount = '7.25' WHERE id = 1`, schema.QuoteIdent(svcTable)))
	testenv.Exec(t, s, fmt.Sprintf(`DELETE FROM %s WHERE id = 2`, schema.QuoteIdent(svcTable)))
	m := testenv.Conn(t, "monolith")
	testenv.Exec(t, m, fmt.Sprintf(`UPDATE %s SET note = 'from the monolith' WHERE id = 3`, schema.QuoteIdent(table)))
	waitEqual(t, d, "both sides", query(t, "monolith", mono), query(t, "service", svc))
	got := query(t, "monolith", fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(note, '-') || '|' || coalesce(secret, '-') FROM %s WHERE id IN (1, 2, 3, 1000)`, schema.QuoteIdent(table)))()
	want := []string{"1000|5.50|from the service|-", "1|7.25|edited|s", "3|3.00|from the monolith|s"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("monolith rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The reverse topic holds the service's three writes and nothing else:
	// the forward sink's write of row 3 was not captured back.
	rev := pipeline.ReverseTopic(e.prefix, &pipeline.Mapping{Name: "rt"})
	var values int
	for _, msg := range testenv.ReadTopic(t, rev, 3, 10*time.Second) {
		if msg.Value != nil {
			values++
		}
	}
	if values != 3 {
		t.Fatalf("%d events in %s, want the service's 3", values, rev)
	}
}

// TestReverseNoEcho: one monolith table, two services with direction both.
// A write in service A reaches the monolith and service B, and nothing comes
// back to A; counted in Kafka: one event in A's reverse topic, one in the
// monolith's topic (tagged with A's reverse flow), none in B's.
func TestReverseNoEcho(t *testing.T) {
	table := createTable(t, 5)
	a, b := table+"_a", table+"_b"
	e := newE2E(t, fmt.Sprintf(`mappings:
  - {name: echo-a, source: public.%[1]s, store: accounts, target: %[2]s, direction: both}
  - {name: echo-b, source: public.%[1]s, store: accounts, target: %[3]s, direction: both}
`, table, a, b))
	d := startProc(t, e.env)
	rows := func(tbl string) string {
		return fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(note, '') FROM %s`, schema.QuoteIdent(tbl))
	}
	waitEqual(t, d, "snapshot -> A", query(t, "monolith", rows(table)), query(t, "service", rows(a)))
	waitEqual(t, d, "snapshot -> B", query(t, "monolith", rows(table)), query(t, "service", rows(b)))
	waitReverse(t, d, 2)
	topic := e.prefix + ".public." + table
	seen := map[[2]int64]bool{}
	for _, m := range testenv.ReadTopic(t, topic, 0, 0) {
		seen[[2]int64{int64(m.Partition), m.Offset}] = true
	}

	s := testenv.Conn(t, "service")
	testenv.Exec(t, s, fmt.Sprintf(`UPDATE %s SET note = 'written in A' WHERE id = 1`, schema.QuoteIdent(a)))
	waitEqual(t, d, "A's write -> monolith", query(t, "monolith", rows(table)), query(t, "service", rows(a)))
	waitEqual(t, d, "A's write -> B", query(t, "monolith", rows(table)), query(t, "service", rows(b)))
	// Let anything that would echo arrive: a heartbeat of each source
	// after the write has passed through both reverse and forward flows.
	time.Sleep(3 * time.Second)

	count := func(topic string) (n int, origins []string) {
		for _, m := range testenv.ReadTopic(t, topic, 0, 0) {
			if m.Value == nil {
				continue
			}
			n++
			for _, h := range m.Headers {
				if h.Key == pipeline.OriginHeader {
					origins = append(origins, string(h.Value))
				}
			}
		}
		return n, origins
	}
	if n, _ := count(pipeline.ReverseTopic(e.prefix, &pipeline.Mapping{Name: "echo-a"})); n != 1 {
		t.Errorf("A's reverse topic has %d events, want 1", n)
	}
	if n, _ := count(pipeline.ReverseTopic(e.prefix, &pipeline.Mapping{Name: "echo-b"})); n != 0 {
		t.Errorf("B's reverse topic has %d events, want 0 (B's copy of A's write came back)", n)
	}
	var fresh, tagged int
	for _, m := range testenv.ReadTopic(t, topic, 0, 0) {
		if m.Value == nil || seen[[2]int64{int64(m.Partition), m.Offset}] {
			continue
		}
		fresh++
		for _, h := range m.Headers {
			if h.Key == pipeline.OriginHeader && string(h.Value) == "reverse:echo-a" {
				tagged++
			}
		}
	}
	if fresh != 1 || tagged != 1 {
		t.Errorf("the monolith's topic got %d events (%d tagged reverse:echo-a), want 1 tagged", fresh, tagged)
	}
}

// write is one committed write of the race test.
type write struct {
	key     int
	deleted bool
	note    string
	ts      int64 // commit time, µs
	side    string
}

// raceWriter writes random upserts, updates and deletes on keys 1..keys of
// table in db until ctx ends, recording every write that changed a row
// with its commit time.
func raceWriter(ctx context.Context, t *testing.T, db, side, table string, seed int64, keys int, out chan<- write) {
	c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close(context.Background())
	r := rand.New(rand.NewSource(seed))
	q := schema.QuoteIdent(table)
	col := "note"
	if side == "service" {
		col = "remark"
	}
	for seq := 0; ctx.Err() == nil; seq++ {
		k := 1 + r.Intn(keys)
		note := fmt.Sprintf("%s-%d-%d", side, seed, seq)
		var sql string
		var args []any
		deleted := false
		switch n := r.Intn(4); {
		case n < 2:
			sql, args = fmt.Sprintf(`UPDATE %s SET %s = $2 WHERE id = $1`, q, col), []any{k, note}
		case n == 2:
			sql, args = fmt.Sprintf(`INSERT INTO %s (id, amount, %s) VALUES ($1::int, $1::int, $2) ON CONFLICT (id) DO UPDATE SET %[2]s = EXCLUDED.%[2]s`, q, col), []any{k, note}
		default:
			sql, args, deleted = fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, q), []any{k}, true
		}
		var xid int64
		var affected int64
		err := pgx.BeginFunc(context.Background(), c, func(tx pgx.Tx) error {
			if err := tx.QueryRow(context.Background(), `SELECT txid_current()`).Scan(&xid); err != nil {
				return err
			}
			tag, err := tx.Exec(context.Background(), sql, args...)
			affected = tag.RowsAffected()
			return err
		})
		if err != nil {
			t.Errorf("%s writer: %v", side, err)
			return
		}
		if affected == 0 {
			continue // changed nothing: not a write
		}
		var ts int64
		if err := c.QueryRow(context.Background(), `SELECT (extract(epoch FROM pg_xact_commit_timestamp(($1::bigint % 4294967296)::text::xid)) * 1000000)::bigint`, xid).Scan(&ts); err != nil {
			t.Errorf("%s writer: commit time: %v", side, err)
			return
		}
		if deleted {
			note = ""
		}
		out <- write{key: k, deleted: deleted, note: note, ts: ts, side: side}
		time.Sleep(time.Duration(r.Intn(4)) * time.Millisecond)
	}
}

// TestReverseRaceLastWriterWins: two writers on each side hit the same 100
// keys for 20 s (with scoop SIGKILLed and restarted in the middle when
// kill is set); then both sides hold the same rows, and each key holds the
// write with the latest commit time (the monolith's at a tie), or is absent
// if that write was a delete.
func TestReverseRaceLastWriterWins(t *testing.T) { race(t, "last-writer-wins", false) }

// TestReverseRaceSurvivesKill: the race with scoop SIGKILLed mid-way.
func TestReverseRaceSurvivesKill(t *testing.T) { race(t, "last-writer-wins", true) }

// TestReverseRaceMonolithWins: the race under monolith-wins: the final row
// of a key is the monolith's last write of it, unless the service wrote it
// again later on top of that write.
func TestReverseRaceMonolithWins(t *testing.T) { race(t, "monolith-wins", false) }

// TestReverseRaceServiceWins: the same with the sides swapped, and scoop
// SIGKILLed mid-way (the versions and the notes of what a write was made on
// top of must survive a restart too).
func TestReverseRaceServiceWins(t *testing.T) { race(t, "service-wins", true) }

func race(t *testing.T, policy string, kill bool) {
	const keys = 100
	table := createTable(t, keys)
	svcTable := table + "_svc"
	e := newE2E(t, fmt.Sprintf(`mappings:
  - {name: race, source: public.%s, store: accounts, target: %s, direction: both, conflict: %s, columns: {rename: {note: remark}, exclude: [secret]}}
`, table, svcTable, policy))
	d := startProc(t, e.env)
	mono := fmt.Sprintf(`SELECT id || '|' || coalesce(note, '') FROM %s`, schema.QuoteIdent(table))
	svc := fmt.Sprintf(`SELECT id || '|' || coalesce(remark, '') FROM %s`, schema.QuoteIdent(svcTable))
	waitEqual(t, d, "snapshot -> service", query(t, "monolith", mono), query(t, "service", svc))
	waitReverse(t, d, 1)

	seed := time.Now().UnixNano() % 1000
	t.Logf("seeds %d..%d", seed, seed+3)
	ctx, stop := context.WithTimeout(context.Background(), 20*time.Second)
	defer stop()
	writes := make(chan write, 1<<16)
	var wg sync.WaitGroup
	for i, w := range []struct{ db, side, table string }{{"monolith", "monolith", table}, {"monolith", "monolith", table}, {"service", "service", svcTable}, {"service", "service", svcTable}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raceWriter(ctx, t, w.db, w.side, w.table, seed+int64(i), keys, writes)
		}()
	}
	if kill {
		time.Sleep(10 * time.Second)
		d.kill()
		d = startProc(t, e.env)
	}
	wg.Wait()
	close(writes)
	last := map[int]write{}
	byKey := map[int][]write{}
	n := 0
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// The history of the keys the sides disagree on.
		m, sv := query(t, "monolith", mono)(), query(t, "service", svc)()
		bad := map[int]bool{}
		for _, line := range strings.Split(rowDiff(m, sv), "\n") {
			var k int
			if i := strings.Index(line, ": "); i >= 0 {
				fmt.Sscanf(line[i+2:], "%d|", &k)
			}
			if k > 0 {
				bad[k] = true
			}
		}
		for k := range bad {
			h := byKey[k]
			if len(h) > 8 {
				h = h[len(h)-8:]
			}
			t.Logf("key %d, last writes: %+v", k, h)
			t.Logf("key %d versions: monolith %v service %v; rows: monolith %v service %v", k,
				query(t, "monolith", fmt.Sprintf(`SELECT concat_ws(' ', ts, side, deleted, xmin, scoop.commit_us(xmin), prev_ts, prev_side) FROM scoop.row_versions WHERE key = '{"id": %d}' AND tbl = 'public.%s'`, k, table))(),
				query(t, "service", fmt.Sprintf(`SELECT concat_ws(' ', ts, side, deleted, xmin, scoop.commit_us(xmin), prev_ts, prev_side) FROM scoop.row_versions WHERE key = '{"id": %d}' AND tbl = 'public.%s'`, k, svcTable))(),
				query(t, "monolith", fmt.Sprintf(`SELECT concat_ws(' ', id, note, xmin, scoop.commit_us(xmin)) FROM %s WHERE id = %d`, schema.QuoteIdent(table), k))(),
				query(t, "service", fmt.Sprintf(`SELECT concat_ws(' ', id, remark, xmin, scoop.commit_us(xmin)) FROM %s WHERE id = %d`, schema.QuoteIdent(svcTable), k))())
		}
	})
	for w := range writes {
		byKey[w.key] = append(byKey[w.key], w)
		n++
		p, ok := last[w.key]
		if !ok || w.ts > p.ts || w.ts == p.ts && w.side == "monolith" {
			last[w.key] = w
		}
	}
	t.Logf("%d writes on %d keys", n, len(last))
	waitEqual(t, d, "race: monolith vs service", query(t, "monolith", mono), query(t, "service", svc))
	if policy != "last-writer-wins" {
		checkWinner(t, strings.TrimSuffix(policy, "-wins"), keys, byKey, query(t, "monolith", mono)())
		return
	}
	var want []string
	for k := 1; k <= keys; k++ {
		w, ok := last[k]
		switch {
		case !ok:
			want = append(want, fmt.Sprintf("%d|n%d", k, k)) // never written
		case !w.deleted:
			want = append(want, fmt.Sprintf("%d|%s", k, w.note))
		}
	}
	sort.Strings(want)
	got := query(t, "monolith", mono)()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("both sides agree but not on the last writer:\n%s", rowDiff(want, got))
	}
}

// checkWinner checks the final rows against a policy where winner's writes
// beat concurrent ones: a key holds the winner's last write of it, or a
// later write of the other side (made on top of it); a key the winner
// never wrote holds the other side's last write.
func checkWinner(t *testing.T, winner string, keys int, byKey map[int][]write, rows []string) {
	t.Helper()
	final := map[int]string{} // absent: deleted
	for _, r := range rows {
		var k int
		id, note, _ := strings.Cut(r, "|")
		fmt.Sscan(id, &k)
		final[k] = note
	}
	state := func(w write) (string, bool) { return w.note, !w.deleted }
	bad := 0
	for k := 1; k <= keys; k++ {
		got, present := final[k]
		var lastWin, lastAny *write
		for i := range byKey[k] {
			w := &byKey[k][i]
			if w.side == winner && (lastWin == nil || w.ts > lastWin.ts) {
				lastWin = w
			}
			if lastAny == nil || w.ts > lastAny.ts {
				lastAny = w
			}
		}
		allowed := []write{}
		switch {
		case lastAny == nil:
			allowed = append(allowed, write{note: fmt.Sprintf("n%d", k)})
		case lastWin == nil:
			allowed = append(allowed, *lastAny)
		default:
			allowed = append(allowed, *lastWin)
			for _, w := range byKey[k] {
				if w.side != winner && w.ts > lastWin.ts {
					allowed = append(allowed, w)
				}
			}
		}
		ok := false
		for _, w := range allowed {
			if note, exists := state(w); exists == present && (!exists || note == got) {
				ok = true
			}
		}
		if !ok && bad < 5 {
			bad++
			t.Errorf("key %d holds %q (present %v); allowed under %s-wins: %+v", k, got, present, winner, allowed)
		}
	}
}

// TestReverseRetired: when the last mapping in direction both of a store
// is removed, scoop drops the store's reverse slot and publication (a slot
// left behind would hold the service's WAL back for ever).
func TestReverseRetired(t *testing.T) {
	table := createTable(t, 3)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - {name: retire, source: public.%s, store: accounts, target: %s_svc, direction: both}\n", table, table))
	d := startProc(t, e.env)
	waitReverse(t, d, 1)
	svc := testenv.Conn(t, "service")
	objects := func() int {
		var n int
		if err := svc.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1)
			+ (SELECT count(*) FROM pg_publication WHERE pubname = $1)`, e.slot+"_rev_accounts").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for objects() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no reverse slot and publication:\n%s", tail(d.logs(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := e.cli(t, "mappings", "remove", "retire"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	deadline = time.Now().Add(60 * time.Second)
	for objects() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the reverse slot or publication is still there:\n%s", tail(d.logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(d.logs(), "dropped its reverse slot and publication") {
		t.Fatalf("the retirement was not logged:\n%s", tail(d.logs(), 3000))
	}
}
