package main

import (
	"fmt"
	"strings"
	"testing"

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
