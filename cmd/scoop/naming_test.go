package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// TestHostileTableName: a table whose name Kafka refuses as a topic name
// gets a topic with those characters replaced by _ and reaches both stores;
// a second table whose topic would meet the first is refused naming both.
func TestHostileTableName(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	suffix := testenv.Name("h")
	table := `We"ird; Tbl ☃ ` + suffix
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text)`, schema.QuoteIdent(table)))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g FROM generate_series(1, 30) g`, schema.QuoteIdent(table)))
	target := testenv.Name("weird") // Cassandra table names are [A-Za-z0-9_]
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: weird-pg\n    source: 'public.%[1]s'\n    store: accounts\n  - name: weird-cass\n    source: 'public.%[1]s'\n    store: orders\n    target: %[2]s\n", table, target))
	d := startProc(t, e.env)
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = 'changed ☃' WHERE id %% 3 = 0`, schema.QuoteIdent(table)))
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id %% 7 = 0`, schema.QuoteIdent(table)))
	waitEqual(t, d, "hostile name -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	waitEqual(t, d, "hostile name -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, target))
	out, err := e.cli(t, "mappings", "describe", "weird-pg")
	if want := `"topic": "` + e.prefix + `.public.We_ird__Tbl___` + suffix + `"`; err != nil || !strings.Contains(out, want) {
		t.Fatalf("describe: %v\n%s\nwant %s", err, out, want)
	}

	// The table named like the first one's topic would share its topic.
	twin := "We_ird__Tbl___" + suffix
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY)`, schema.QuoteIdent(twin)))
	both := writeMappings(t, fmt.Sprintf("mappings:\n  - name: weird-pg\n    source: 'public.%s'\n    store: accounts\n  - name: twin\n    source: public.%s\n    store: accounts\n", table, twin))
	_, err = e.cli(t, "mappings", "apply", "-f", both)
	want := fmt.Sprintf("%s: invalid mappings:\nmapping twin: field topic: mapping weird-pg (table public.%s) and mapping twin (table public.%s) would both publish to topic %q", both, table, twin, e.prefix+".public."+twin)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("colliding topics:\ngot  %v\nwant %s", err, want)
	}
	if out, _ := e.cli(t, "mappings", "list"); strings.Contains(out, "twin") {
		t.Fatalf("a colliding file changed the registry:\n%s", out)
	}
}

// fit pads name with x to exactly n bytes.
func fit(name string, n int) string {
	return name + strings.Repeat("x", n-len(name))
}

// TestHostileColumnsAndKeyspace: a 63-byte table name and columns named
// with quotes, semicolons, spaces, unicode and 63 bytes (the key among them)
// reach PostgreSQL (enough rows per batch for COPY and the merge, few for
// the single statements) and a Cassandra keyspace of the longest odd legal name
// (48 bytes, a digit first, mixed case) through the snapshot, streamed
// inserts, updates and deletes; `scoop verify` then finds both equal.
func TestHostileColumnsAndKeyspace(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	suffix := testenv.Name("")
	table := fit(`T "q"; ☃ `+suffix, 63)
	cols := []string{`k"ey; 1`, `Col"; DROP`, `sp ace`, `ünï`, fit(`Lóng "name"; -- `, 63)}
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = schema.QuoteIdent(c)
	}
	qt := schema.QuoteIdent(table)
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (%s int PRIMARY KEY, %s numeric(12,2), %s text, %s text, %s text)`, qt, q[0], q[1], q[2], q[3], q[4]))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g * 1.5, 'a b' || g, 'ü' || g, 'l' || g FROM generate_series(1, 400) g`, qt))

	keyspace := fit("9Ks_"+strings.ReplaceAll(suffix, "-", "_"), 48)
	target := testenv.Name("hcol")
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: hostile-pg\n    source: 'public.%[1]s'\n    store: accounts\n  - name: hostile-cass\n    source: 'public.%[1]s'\n    store: orders\n    target: %[2]s\n", strings.ReplaceAll(table, "'", "''"), target))
	for i, kv := range e.env {
		if strings.HasPrefix(kv, "SCOOP_STORE_ORDERS_URL=") {
			e.env[i] = "SCOOP_STORE_ORDERS_URL=cassandra://" + testenv.CassandraAddr() + "/" + keyspace
		}
	}
	t.Cleanup(func() {
		cl := gocql.NewCluster("127.0.0.1")
		fmt.Sscan(testenv.CassandraPort, &cl.Port)
		cl.Timeout = 30 * time.Second
		if s, err := cl.CreateSession(); err == nil {
			s.Query(`DROP KEYSPACE IF EXISTS ` + schema.QuoteIdent(keyspace)).Exec()
			s.Close()
		}
	})
	pgRows := func(db string) func() []string {
		return func() []string {
			c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
			if err != nil {
				return nil
			}
			defer c.Close(context.Background())
			var sel []string
			for _, c := range q {
				sel = append(sel, "coalesce("+c+"::text, '')")
			}
			rows, err := c.Query(context.Background(), fmt.Sprintf(`SELECT concat_ws('|', %s) FROM %s`, strings.Join(sel, ", "), qt))
			if err != nil {
				return nil
			}
			out, _ := pgx.CollectRows(rows, pgx.RowTo[string])
			sort.Strings(out)
			return out
		}
	}
	session := lazyCassandra(t, keyspace)
	cassRows := func() []string {
		s := session()
		if s == nil {
			return nil
		}
		iter := s.Query(fmt.Sprintf(`SELECT %s FROM %s`, strings.Join(q, ", "), schema.QuoteIdent(target))).Iter()
		var out []string
		for m := map[string]any{}; iter.MapScan(m); m = map[string]any{} {
			var vals []string
			for _, c := range cols {
				switch v := m[c].(type) {
				case nil:
					vals = append(vals, "")
				case string:
					vals = append(vals, v)
				default:
					vals = append(vals, fmt.Sprint(v))
				}
			}
			out = append(out, strings.Join(vals, "|"))
		}
		if iter.Close() != nil {
			return nil
		}
		sort.Strings(out)
		return out
	}
	d := startProc(t, e.env)
	// The snapshot first, then the changes streamed.
	waitEqual(t, d, "hostile columns snapshot -> PostgreSQL", pgRows("monolith"), pgRows("service"))
	waitEqual(t, d, "hostile columns snapshot -> Cassandra", pgRows("monolith"), cassRows)
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'new ' || g, NULL, '☃' FROM generate_series(401, 500) g`, qt))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET %s = %s + 1, %s = 'changed; "x"' WHERE %s %% 3 = 0`, qt, q[1], q[1], q[2], q[0]))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET %s = 'ö' WHERE %s %% 4 = 0`, qt, q[4], q[0]))
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE %s %% 7 = 0`, qt, q[0]))

	if n := len(pgRows("monolith")()); n != 429 {
		t.Fatalf("monolith: %d rows, want 429", n)
	}
	waitEqual(t, d, "hostile columns streamed -> PostgreSQL", pgRows("monolith"), pgRows("service"))
	waitEqual(t, d, "hostile columns streamed -> Cassandra", pgRows("monolith"), cassRows)
	for _, name := range []string{"hostile-pg", "hostile-cass"} {
		if code, out, errs := runVerify(t, e.env, name); code != 0 || !strings.Contains(out, ": equal: 429 rows") {
			t.Fatalf("verify %s: exit %d\n%s\n%s", name, code, out, errs)
		}
	}
}

// TestIllegalKeyspace: a Cassandra keyspace name Cassandra would refuse
// stops `scoop run` at start, naming the setting, before any mapping runs.
func TestIllegalKeyspace(t *testing.T) {
	e := newE2E(t, "mappings: []\n")
	for _, c := range []struct{ path, keyspace string }{
		{"ks-dash", "ks-dash"},
		{"ks%3B%20DROP", "ks; DROP"},
		{"k%C3%BC", "kü"},
		{strings.Repeat("k", 49), strings.Repeat("k", 49)},
	} {
		url := "cassandra://" + testenv.CassandraAddr() + "/" + c.path
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, binary, "run")
		cmd.Env = append(append(os.Environ(), e.env...), "SCOOP_STORE_ORDERS_URL="+url)
		out, err := cmd.CombinedOutput()
		cancel()
		want := fmt.Sprintf("SCOOP_STORE_ORDERS_URL: cassandra URL %q: keyspace %q is not one Cassandra accepts: use 1 to 48 letters, digits or _", url, c.keyspace)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.Contains(string(out), want) {
			t.Fatalf("keyspace %q: %v\n%s\nwant %s", c.keyspace, err, out, want)
		}
	}
}
