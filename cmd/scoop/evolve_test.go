package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// pgColumn reads id and one column of a PostgreSQL table as sorted
// "id|value" lines (nil while the table or column is missing).
func pgColumn(t *testing.T, db, table, column string) func() []string {
	return func() []string {
		c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
		if err != nil {
			return nil
		}
		defer c.Close(context.Background())
		rows, err := c.Query(context.Background(), fmt.Sprintf(`SELECT id || '|' || coalesce(%s::text, '') FROM %s`, schema.QuoteIdent(column), schema.QuoteIdent(table)))
		if err != nil {
			return nil
		}
		out, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		sort.Strings(out)
		return out
	}
}

// cassandraColumn reads id and one column of a Cassandra table the same way
// (as text: MapScan reads a NULL number or date as its zero value).
func cassandraColumn(t *testing.T, keyspace, table, column string) func() []string {
	session := lazyCassandra(t, keyspace)
	return func() []string {
		s := session()
		if s == nil {
			return nil
		}
		iter := s.Query(fmt.Sprintf(`SELECT id, CAST(%s AS text) AS v FROM %s`, schema.QuoteIdent(column), schema.QuoteIdent(table))).Iter()
		var out []string
		m := map[string]any{}
		for iter.MapScan(m) {
			v := ""
			if x, ok := m["v"].(string); ok {
				v = x
			}
			out = append(out, fmt.Sprintf("%v|%s", m["id"], v))
			m = map[string]any{}
		}
		if err := iter.Close(); err != nil {
			return nil
		}
		sort.Strings(out)
		return out
	}
}

func hasPGColumn(t *testing.T, table, column string) bool {
	var n int
	testenv.Conn(t, "service").QueryRow(context.Background(), `SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = $2`, table, column).Scan(&n)
	return n == 1
}

// TestAddColumnMidStream: a column added to the monolith table while scoop
// streams is added to the PostgreSQL and the Cassandra target, and its values
// arrive from the first event that carries it; a mapping whose include list
// leaves it out does not get it.
func TestAddColumnMidStream(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table := createTable(t, 20)
	e := newE2E(t, fmt.Sprintf(`mappings:
  - name: add-pg
    source: public.%[1]s
    store: accounts
  - name: add-cass
    source: public.%[1]s
    store: orders
  - name: add-inc
    source: public.%[1]s
    store: accounts
    target: %[1]s_inc
    columns: {include: [id, amount, note]}
`, table))
	d := startProc(t, e.env)
	waitEqual(t, d, "before ADD COLUMN -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	waitEqual(t, d, "before ADD COLUMN -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))

	q := schema.QuoteIdent(table)
	testenv.Exec(t, mono, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN "Extra Col" bigint`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g, 's', g * 10 FROM generate_series(21, 40) g`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET "Extra Col" = id WHERE id <= 5`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET amount = 0 WHERE id = 6`, q))

	waitEqual(t, d, "added column -> PostgreSQL", pgColumn(t, "monolith", table, "Extra Col"), pgColumn(t, "service", table, "Extra Col"))
	waitEqual(t, d, "added column -> Cassandra", pgColumn(t, "monolith", table, "Extra Col"), cassandraColumn(t, e.keyspace, table, "Extra Col"))
	waitEqual(t, d, "after ADD COLUMN -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	waitEqual(t, d, "after ADD COLUMN -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))
	waitEqual(t, d, "include list -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table+"_inc"))
	var typ string
	testenv.Conn(t, "service").QueryRow(context.Background(), `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'Extra Col'`, q).Scan(&typ)
	if typ != "bigint" {
		t.Fatalf("added PostgreSQL column is %q, want bigint", typ)
	}
	if hasPGColumn(t, table+"_inc", "Extra Col") {
		t.Fatal("the column left out by columns.include was added to the target")
	}
}

// TestDropColumnMidStream: a column dropped from the monolith table stops
// being written; the PostgreSQL target's NOT NULL on it is dropped so new
// rows still go in.
func TestDropColumnMidStream(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table := testenv.Name("drop")
	q := schema.QuoteIdent(table)
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text, tag text NOT NULL)`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g, 't' || g FROM generate_series(1, 10) g`, q))
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: drop-pg\n    source: public.%[1]s\n    store: accounts\n  - name: drop-cass\n    source: public.%[1]s\n    store: orders\n", table))
	d := startProc(t, e.env)
	waitEqual(t, d, "before DROP COLUMN -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	waitEqual(t, d, "before DROP COLUMN -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))

	testenv.Exec(t, mono, fmt.Sprintf(`ALTER TABLE %s DROP COLUMN tag`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g FROM generate_series(11, 30) g`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = 'u' WHERE id <= 3`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id = 4`, q))

	waitEqual(t, d, "after DROP COLUMN -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	waitEqual(t, d, "after DROP COLUMN -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))
	// The old column keeps the values it had; new rows have none.
	want := func() []string {
		var out []string
		for id := 1; id <= 30; id++ {
			switch {
			case id == 4:
			case id <= 10:
				out = append(out, fmt.Sprintf("%d|t%d", id, id))
			default:
				out = append(out, fmt.Sprintf("%d|", id))
			}
		}
		sort.Strings(out)
		return out
	}
	waitEqual(t, d, "dropped column in PostgreSQL", want, pgColumn(t, "service", table, "tag"))
	waitEqual(t, d, "dropped column in Cassandra", want, cassandraColumn(t, e.keyspace, table, "tag"))
}

// TestRestartAfterAddColumn: scoop is stopped, a column is added and
// written, scoop starts again: the existing targets gain the column instead
// of being refused, and the values arrive.
func TestRestartAfterAddColumn(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table := createTable(t, 10)
	q := schema.QuoteIdent(table)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: rs-pg\n    source: public.%[1]s\n    store: accounts\n  - name: rs-cass\n    source: public.%[1]s\n    store: orders\n", table))
	d := startProc(t, e.env)
	waitEqual(t, d, "before restart -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	waitEqual(t, d, "before restart -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))
	d.cmd.Process.Signal(sigterm)
	d.cmd.Wait()

	testenv.Exec(t, mono, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN added_at date`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g, 's', date '2026-01-01' + g FROM generate_series(11, 20) g`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET added_at = date '2025-01-01' WHERE id = 1`, q))

	d = startProc(t, e.env)
	waitEqual(t, d, "added column after restart -> PostgreSQL", pgColumn(t, "monolith", table, "added_at"), pgColumn(t, "service", table, "added_at"))
	waitEqual(t, d, "added column after restart -> Cassandra", pgColumn(t, "monolith", table, "added_at"), cassandraColumn(t, e.keyspace, table, "added_at"))
	waitEqual(t, d, "rows after restart -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
}

// TestIncompatibleTypeChange: a source column changes to a type its targets
// cannot hold. Only the mappings of that table pause, with the fix in
// /status and scoop_sink_schema_mismatch; no event is dead-lettered; another
// mapping keeps flowing; once the operator ran the ALTER, the PostgreSQL
// mapping resumes with the value.
func TestIncompatibleTypeChange(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table, other := testenv.Name("tc"), createTable(t, 5)
	q := schema.QuoteIdent(table)
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, code integer)`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g FROM generate_series(1, 5) g`, q))
	e := newE2E(t, fmt.Sprintf(`mappings:
  - name: tc-pg
    source: public.%[1]s
    store: accounts
  - name: tc-cass
    source: public.%[1]s
    store: orders
  - name: tc-other
    source: public.%[2]s
    store: accounts
`, table, other))
	addr := freeAddr(t)
	env := append([]string{}, e.env...)
	for i, kv := range env {
		if strings.HasPrefix(kv, "SCOOP_ADMIN_ADDR=") {
			env[i] = "SCOOP_ADMIN_ADDR=" + addr
		}
	}
	d := startProc(t, env)
	waitEqual(t, d, "before the type change -> PostgreSQL", pgColumn(t, "monolith", table, "code"), pgColumn(t, "service", table, "code"))
	waitEqual(t, d, "before the type change -> Cassandra", pgColumn(t, "monolith", table, "code"), cassandraColumn(t, e.keyspace, table, "code"))

	testenv.Exec(t, mono, fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN code TYPE text`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (6, 'ABC-6')`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET amount = 77 WHERE id = 1`, schema.QuoteIdent(other)))

	// The other mapping flows.
	waitEqual(t, d, "other mapping", pgOrders(t, "monolith", other), pgOrders(t, "service", other))
	// Both mappings of the changed table pause with the fix.
	wantPG := fmt.Sprintf(`column \"code\" is integer but the source is text (fix: ALTER TABLE \"public\".%s ALTER COLUMN \"code\" TYPE text USING \"code\"::text`, strings.ReplaceAll(q, `"`, `\"`))
	wantCass := `column \"code\" is int but scoop writes text (fix: Cassandra cannot change a column's type`
	var status string
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, status = get(t, "http://"+addr+"/status", "")
		if strings.Contains(status, wantPG) && strings.Contains(status, wantCass) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status lacks the fix\nwant %s\nand  %s\nstatus: %s\nlog:\n%s", wantPG, wantCass, status, tail(d.logs(), 3000))
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("status while paused: %s", status)
	_, metrics := get(t, "http://"+addr+"/metrics", "")
	for _, m := range []string{`scoop_sink_schema_mismatch{mapping="tc-pg"} 1`, `scoop_sink_schema_mismatch{mapping="tc-cass"} 1`, `scoop_sink_schema_mismatch{mapping="tc-other"} 0`,
		`scoop_sink_paused{mapping="tc-pg"} 1`, `scoop_sink_paused{mapping="tc-other"} 0`, `scoop_sink_dead_letters_total{mapping="tc-pg"} 0`, `scoop_sink_dead_letters_total{mapping="tc-cass"} 0`,
		`scoop_sink_errors_total{kind="schema_mismatch",mapping="tc-other"} 0`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	// Each stop for the operator counts (the sink may be rebuilt meanwhile).
	if v := metricValue(metrics, `scoop_sink_errors_total{kind="schema_mismatch",mapping="tc-pg"}`); v < 1 {
		t.Errorf(`scoop_sink_errors_total{kind="schema_mismatch",mapping="tc-pg"} = %v, want at least 1`, v)
	}
	// The other mapping still flows while these are paused.
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET amount = 78 WHERE id = 2`, schema.QuoteIdent(other)))
	waitEqual(t, d, "other mapping while paused", pgOrders(t, "monolith", other), pgOrders(t, "service", other))

	// The operator runs the fix; the PostgreSQL mapping resumes.
	testenv.Exec(t, testenv.Conn(t, "service"), fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN "code" TYPE text USING "code"::text`, q))
	waitEqual(t, d, "after the fix -> PostgreSQL", pgColumn(t, "monolith", table, "code"), pgColumn(t, "service", table, "code"))
}

// TestColumnAddedAndDroppedWhileStopped: a column is added, written and
// dropped again while scoop is stopped. The events in Kafka carry a column
// the source no longer has; the mappings ignore it (logged) instead of
// rebuilding their sinks in a loop, and every row arrives.
func TestColumnAddedAndDroppedWhileStopped(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table := createTable(t, 5)
	q := schema.QuoteIdent(table)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: gone-pg\n    source: public.%[1]s\n    store: accounts\n  - name: gone-cass\n    source: public.%[1]s\n    store: orders\n", table))
	d := startProc(t, e.env)
	waitEqual(t, d, "before -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	waitEqual(t, d, "before -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))
	// The source publishes the new column's events; the sinks must not see
	// them yet: stop the whole daemon, and restart it only after the drop.
	d.cmd.Process.Signal(sigterm)
	d.cmd.Wait()
	testenv.Exec(t, mono, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN brief text`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g, 's', 'b' || g FROM generate_series(6, 10) g`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`ALTER TABLE %s DROP COLUMN brief`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g, 's' FROM generate_series(11, 15) g`, q))
	d = startProc(t, e.env)
	waitEqual(t, d, "after -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	waitEqual(t, d, "after -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))
	if n := strings.Count(d.logs(), "events carry a column the source no longer has; its values are ignored"); n != 2 {
		t.Fatalf("%d mappings logged the ignored column, want 2\n%s", n, tail(d.logs(), 3000))
	}
	if hasPGColumn(t, table, "brief") {
		t.Fatal("the column dropped before the sink saw it was added to the target")
	}
}

// TestExcludedColumnDropped: dropping a column the mapping excludes or
// converts does not pause the mapping when its sink is rebuilt (here for a
// column added next).
func TestExcludedColumnDropped(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table := createTable(t, 5)
	q := schema.QuoteIdent(table)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: ex-pg\n    source: public.%[1]s\n    store: accounts\n    columns: {exclude: [secret]}\n  - name: ex-cass\n    source: public.%[1]s\n    store: orders\n    columns: {types: {secret: text}}\n", table))
	d := startProc(t, e.env)
	waitEqual(t, d, "before -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	testenv.Exec(t, mono, fmt.Sprintf(`ALTER TABLE %s DROP COLUMN secret`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN more int`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g, g FROM generate_series(6, 10) g`, q))
	waitEqual(t, d, "added column -> PostgreSQL", pgColumn(t, "monolith", table, "more"), pgColumn(t, "service", table, "more"))
	waitEqual(t, d, "added column -> Cassandra", pgColumn(t, "monolith", table, "more"), cassandraColumn(t, e.keyspace, table, "more"))
	if !strings.Contains(d.logs(), `msg="the mapping names a column the source no longer has; ignored" mapping=ex-pg store=accounts field=columns.exclude column=secret`) {
		t.Fatalf("the ignored exclude entry was not logged\n%s", tail(d.logs(), 3000))
	}
}

// TestRenameColumnMidStream: a source rename arrives as drop+add: the new
// name becomes a new target column, the old one keeps its values.
func TestRenameColumnMidStream(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table := createTable(t, 3)
	q := schema.QuoteIdent(table)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: ren-pg\n    source: public.%[1]s\n    store: accounts\n  - name: ren-cass\n    source: public.%[1]s\n    store: orders\n", table))
	d := startProc(t, e.env)
	waitEqual(t, d, "before -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	waitEqual(t, d, "before -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))
	testenv.Exec(t, mono, fmt.Sprintf(`ALTER TABLE %s RENAME COLUMN note TO memo`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (4, 4, 'm4', 's')`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET memo = 'm1' WHERE id = 1`, q))
	want := func(rows ...string) func() []string { return func() []string { return rows } }
	waitEqual(t, d, "new name -> PostgreSQL", want("1|m1", "2|", "3|", "4|m4"), pgColumn(t, "service", table, "memo"))
	waitEqual(t, d, "new name -> Cassandra", want("1|m1", "2|", "3|", "4|m4"), cassandraColumn(t, e.keyspace, table, "memo"))
	waitEqual(t, d, "old name -> PostgreSQL", want("1|n1", "2|n2", "3|n3", "4|"), pgColumn(t, "service", table, "note"))
	waitEqual(t, d, "old name -> Cassandra", want("1|n1", "2|n2", "3|n3", "4|"), cassandraColumn(t, e.keyspace, table, "note"))
}
