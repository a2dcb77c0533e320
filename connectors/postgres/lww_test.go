package postgres

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

func lwwSink(t *testing.T, side string) (*Sink, string) {
	t.Helper()
	return policySink(t, side, pipeline.LastWriterWins)
}

func policySink(t *testing.T, side string, policy pipeline.Conflict) (*Sink, string) {
	t.Helper()
	db := freshDatabase(t)
	url := testenv.PGURL(db)
	target := pipeline.Target{Table: "rows", Columns: []pipeline.Column{
		{Name: "id", Source: "id", SQLType: "integer", BaseType: "int4", Key: true},
		{Name: "note", Source: "note", SQLType: "text", BaseType: "text"},
	}}
	s, err := NewSink(context.Background(), SinkConfig{URL: url, Mapping: "lww", Topic: "lww", Target: target, NoOrigin: true,
		Conflict: &Conflict{Side: side, Policy: policy, Tag: "forward:lww"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, db
}

func change(op schema.Op, offset int64, id int, note string, at time.Time) pipeline.Change {
	c := pipeline.Change{Op: op, Partition: 0, Offset: offset, CommitTime: at,
		Key: map[string]json.RawMessage{"id": json.RawMessage(itoa(id))}}
	if op != schema.OpDelete {
		n, _ := json.Marshal(note)
		c.After = map[string]json.RawMessage{"id": json.RawMessage(itoa(id)), "note": n}
	}
	return c
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// An application deletes a row while scoop applies an older write of it:
// scoop's insert waits for the delete, then would re-create the row from
// a snapshot that predates the delete. The version's write sees the
// delete and fails the batch (retried); applied again, the older write is
// refused and the row stays deleted.
func TestConflictApplyRacingDelete(t *testing.T) {
	ctx := context.Background()
	s, db := lwwSink(t, SideService)
	old := time.Now().Add(-time.Hour)
	if err := s.Apply(ctx, []pipeline.Change{change(schema.OpCreate, 0, 1, "first", old)}); err != nil {
		t.Fatal(err)
	}
	app := testenv.Conn(t, db)
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, tx.Conn(), `DELETE FROM rows WHERE id = 1`)
	applied := make(chan error, 1)
	go func() {
		applied <- s.Apply(ctx, []pipeline.Change{change(schema.OpUpdate, 1, 1, "older than the delete", old.Add(time.Minute))})
	}()
	waitForLockWait(t, db, "scoop's apply never waited for the application's delete")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	err = <-applied
	if err == nil || !strings.Contains(err.Error(), "the row was written while scoop applied an older change to it; retrying (SQLSTATE 40001)") {
		t.Fatalf("apply racing the delete: %v", err)
	}
	if err := s.Apply(ctx, []pipeline.Change{change(schema.OpUpdate, 1, 1, "older than the delete", old.Add(time.Minute))}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := app.QueryRow(ctx, `SELECT count(*) FROM rows`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows: the older write brought back the row the application deleted", n)
	}
}

// waitForLockWait returns once a session of db waits for a lock.
func waitForLockWait(t *testing.T, db, what string) {
	t.Helper()
	waitForLockWaits(t, db, 1, what)
}

// waitForLockWaits returns once n sessions of db wait for a lock.
func waitForLockWaits(t *testing.T, db string, n int, what string) {
	t.Helper()
	watch := testenv.Conn(t, db)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := watch.QueryRow(context.Background(), `SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Under monolith-wins, an application on the service inserts a row while
// scoop applies the monolith's delete of it: the delete's snapshot sees no
// row, so it would only record its tombstone, over the insert's version,
// and the row would stay in the service while the monolith refuses the
// insert (not made on top of the delete). The tombstone's write sees the
// insert's version and fails the batch (retried); applied again, the
// delete removes the row.
func TestConflictDeleteRacingInsert(t *testing.T) {
	ctx := context.Background()
	s, db := policySink(t, SideService, pipeline.MonolithWins)
	t0 := time.Now().Add(-time.Hour)
	if err := s.Apply(ctx, []pipeline.Change{change(schema.OpCreate, 0, 1, "monolith", t0), change(schema.OpDelete, 1, 1, "", t0.Add(time.Second))}); err != nil {
		t.Fatal(err)
	}
	app := testenv.Conn(t, db)
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, tx.Conn(), `INSERT INTO rows VALUES (1, 'service, concurrent')`)
	del := change(schema.OpDelete, 2, 1, "", t0.Add(2*time.Second))
	applied := make(chan error, 1)
	go func() { applied <- s.Apply(ctx, []pipeline.Change{del}) }()
	waitForLockWait(t, db, "scoop's delete never waited for the application's insert")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	err = <-applied
	if err == nil || !strings.Contains(err.Error(), "the row was written while scoop applied a delete of it; retrying (SQLSTATE 40001)") {
		t.Fatalf("delete racing the insert: %v", err)
	}
	if err := s.Apply(ctx, []pipeline.Change{del}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := app.QueryRow(ctx, `SELECT count(*) FROM rows`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows: the monolith's delete left the concurrent insert of the side that gives way", n)
	}
}

// Under monolith-wins, scoop applies the monolith's delete of a row the
// service does not have (only its tombstone is recorded) and holds that
// version uncommitted while an application on the service inserts the row:
// the insert read the version from before, and its own version's write
// waited for scoop's. Once scoop commits, the insert is made on top of the
// delete: its version must say so (else the monolith refuses it as
// concurrent with its delete while the service keeps it).
func TestConflictInsertWaitingForTombstone(t *testing.T) {
	ctx := context.Background()
	s, db := policySink(t, SideService, pipeline.MonolithWins)
	t0 := time.Now().Add(-time.Hour)
	if err := s.Apply(ctx, []pipeline.Change{change(schema.OpCreate, 0, 1, "monolith", t0), change(schema.OpCreate, 1, 2, "monolith", t0)}); err != nil {
		t.Fatal(err)
	}
	app := testenv.Conn(t, db)
	testenv.Exec(t, app, `DELETE FROM rows WHERE id = 1`)
	// scoop's batch: the delete of 1 (its tombstone), then a write of row
	// 2, which waits for this lock, so the tombstone stays uncommitted.
	hold := testenv.Conn(t, db)
	tx, err := hold.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	testenv.Exec(t, tx.Conn(), `SELECT * FROM rows WHERE id = 2 FOR UPDATE`)
	del := t0.Add(2 * time.Second)
	applied := make(chan error, 1)
	go func() {
		applied <- s.Apply(ctx, []pipeline.Change{change(schema.OpDelete, 2, 1, "", del), change(schema.OpUpdate, 3, 2, "monolith, later", del)})
	}()
	waitForLockWaits(t, db, 1, "scoop's batch never waited for the lock on row 2")
	inserted := make(chan error, 1)
	go func() {
		_, err := app.Exec(ctx, `INSERT INTO rows VALUES (1, 'service')`)
		inserted <- err
	}()
	waitForLockWaits(t, db, 2, "the application's insert never waited for scoop's tombstone")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if err := <-inserted; err != nil {
		t.Fatal(err)
	}
	var side string
	var ts int64
	if err := app.QueryRow(ctx, `SELECT coalesce(prev_side, ''), coalesce(prev_ts, 0) FROM scoop.row_versions WHERE key = '{"id": 1}'`).Scan(&side, &ts); err != nil {
		t.Fatal(err)
	}
	if side != SideMonolith || ts != del.UnixMicro() {
		t.Fatalf("the insert is noted as made on top of %d %q, want the monolith's delete %d", ts, side, del.UnixMicro())
	}
}

// Last writer wins by commit time, whatever the arrival order: an older
// change after a newer one is refused, a delete is remembered against an
// older insert, and at the same microsecond the monolith's write wins.
func TestConflictLastWriterWins(t *testing.T) {
	ctx := context.Background()
	s, db := lwwSink(t, SideMonolith) // changes come from the service
	conn := testenv.Conn(t, db)
	note := func(id int) string {
		var n string
		if err := conn.QueryRow(ctx, `SELECT coalesce((SELECT note FROM rows WHERE id = $1), '(none)')`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	t0 := time.Now().Add(-time.Hour)
	apply := func(cs ...pipeline.Change) {
		t.Helper()
		if err := s.Apply(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	apply(change(schema.OpCreate, 0, 1, "new", t0.Add(2*time.Second)), change(schema.OpUpdate, 1, 1, "old", t0.Add(time.Second)))
	if got := note(1); got != "new" {
		t.Errorf("row 1 = %q after a newer then an older write, want new", got)
	}
	apply(change(schema.OpDelete, 2, 2, "", t0.Add(2*time.Second)), change(schema.OpCreate, 3, 2, "before the delete", t0.Add(time.Second)))
	if got := note(2); got != "(none)" {
		t.Errorf("row 2 = %q: an insert older than its delete came back", got)
	}
	// A row the monolith's application wrote just now is newer than any
	// change an hour old; at its exact commit time the monolith wins too.
	testenv.Exec(t, conn, `INSERT INTO rows VALUES (3, 'monolith')`)
	var at int64
	if err := conn.QueryRow(ctx, `SELECT scoop.commit_us(xmin) FROM rows WHERE id = 3`).Scan(&at); err != nil {
		t.Fatal(err)
	}
	apply(change(schema.OpUpdate, 4, 3, "service, older", t0), change(schema.OpUpdate, 5, 3, "service, same time", time.UnixMicro(at)))
	if got := note(3); got != "monolith" {
		t.Errorf("row 3 = %q, want the monolith's write", got)
	}
	apply(change(schema.OpUpdate, 6, 3, "service, newer", time.UnixMicro(at+1)))
	if got := note(3); got != "service, newer" {
		t.Errorf("row 3 = %q, want the newer service write", got)
	}
	// The application deletes row 3: a service write older than that
	// delete is refused, a newer one re-creates the row.
	testenv.Exec(t, conn, `DELETE FROM rows WHERE id = 3`)
	apply(change(schema.OpUpdate, 7, 3, "service, before the delete", time.UnixMicro(at+2)))
	if got := note(3); got != "(none)" {
		t.Errorf("row 3 = %q: a write older than the application's delete came back", got)
	}
	apply(change(schema.OpUpdate, 8, 3, "service, after the delete", time.Now().Add(time.Second)))
	if got := note(3); got != "service, after the delete" {
		t.Errorf("row 3 = %q, want the write after the delete", got)
	}
}

// The policies decide per pair of versions (scoop.decide): each case names
// the row's current version (and what it was made on top of), the change
// (and what it was made on top of), and whether the change wins.
func TestConflictPolicies(t *testing.T) {
	ctx := context.Background()
	_, db := lwwSink(t, SideMonolith)
	conn := testenv.Conn(t, db)
	type v struct {
		ts   int64
		side string
	}
	none := v{}
	cases := []struct {
		policy       string
		cur, curPrev v
		change, prev v
		wins         bool
		why          string
	}{
		{"last-writer-wins", v{10, "monolith"}, none, v{11, "service"}, none, true, "newer wins"},
		{"last-writer-wins", v{10, "monolith"}, none, v{10, "service"}, none, false, "the monolith wins a tie"},
		{"last-writer-wins", v{10, "service"}, none, v{10, "monolith"}, none, true, "the monolith wins a tie"},
		{"monolith-wins", v{10, "monolith"}, none, v{20, "service"}, v{5, "monolith"}, false, "a service write made on top of an older monolith version loses, however late"},
		{"monolith-wins", v{10, "monolith"}, none, v{20, "service"}, v{10, "monolith"}, true, "a service write made on top of the current version wins"},
		{"monolith-wins", v{10, "monolith"}, none, v{20, "service"}, none, false, "a service write made on top of nothing known loses"},
		{"monolith-wins", v{20, "service"}, v{5, "monolith"}, v{10, "monolith"}, none, true, "a monolith write the service had not seen beats its write"},
		{"monolith-wins", v{20, "service"}, v{10, "monolith"}, v{10, "monolith"}, none, false, "a monolith write the service wrote on top of does not come back"},
		{"monolith-wins", v{20, "service"}, none, v{25, "service"}, none, true, "one side's writes apply in order"},
		{"monolith-wins", v{20, "service"}, none, v{15, "service"}, none, false, "an older write of the same side (a repeat) does not go back"},
		{"service-wins", v{10, "service"}, none, v{20, "monolith"}, v{5, "service"}, false, "a monolith write made on top of an older service version loses"},
		{"service-wins", v{20, "monolith"}, v{5, "service"}, v{10, "service"}, none, true, "a service write the monolith had not seen beats its write"},
	}
	for _, c := range cases {
		var got bool
		arg := func(x v) (any, any) {
			if x == none {
				return nil, nil
			}
			return x.ts, x.side
		}
		cpt, cps := arg(c.curPrev)
		pt, ps := arg(c.prev)
		if err := conn.QueryRow(ctx, `SELECT scoop.decide($1, $2, $3::bigint, $4::text, $5, $6, $7, $8::bigint, $9::text)`,
			c.cur.ts, c.cur.side, cpt, cps, c.change.ts, c.change.side, c.policy, pt, ps).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.wins {
			t.Errorf("%s: current %v (on %v), change %v (on %v): wins %v, want %v: %s", c.policy, c.cur, c.curPrev, c.change, c.prev, got, c.wins, c.why)
		}
	}
}
