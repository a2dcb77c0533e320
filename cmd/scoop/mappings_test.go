package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// cli runs a scoop command in-process with the e2e environment.
func (e *e2e) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	for _, kv := range e.env {
		k, v, _ := strings.Cut(kv, "=")
		if k != "SCOOP_MAPPINGS_FILE" {
			t.Setenv(k, v)
		}
	}
	var out, errOut bytes.Buffer
	code := runMain(args, &out, &errOut)
	if code != 0 {
		return out.String(), fmt.Errorf("%s", strings.TrimSpace(strings.TrimPrefix(errOut.String(), "scoop: ")))
	}
	return out.String(), nil
}

func (e *e2e) withoutFile() []string {
	var env []string
	for _, kv := range e.env {
		if !strings.HasPrefix(kv, "SCOOP_MAPPINGS_FILE=") {
			env = append(env, kv)
		}
	}
	return env
}

func createTable(t *testing.T, rows int) string {
	t.Helper()
	mono := testenv.Conn(t, "monolith")
	name := testenv.Name("m")
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text, secret text)`, schema.QuoteIdent(name)))
	if rows > 0 {
		testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g, 's' FROM generate_series(1, %d) g`, schema.QuoteIdent(name), rows))
	}
	return name
}

func TestMappingsApply(t *testing.T) {
	a, b := createTable(t, 0), createTable(t, 0)
	e := newE2E(t, "mappings: []\n")
	v1 := writeMappings(t, fmt.Sprintf("mappings:\n  - name: a\n    source: public.%s\n    store: accounts\n  - name: b\n    source: public.%s\n    store: accounts\n", a, b))
	out, err := e.cli(t, "mappings", "apply", "-f", v1, "--dry-run")
	if err != nil || !strings.Contains(out, "add    a (public."+a+" -> accounts."+a+")") || !strings.Contains(out, "dry run") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if out, _ := e.cli(t, "mappings", "list"); strings.Contains(out, "public."+a) {
		t.Fatalf("dry run changed the registry:\n%s", out)
	}
	if out, err := e.cli(t, "mappings", "apply", "-f", v1); err != nil || strings.Count(out, "add") != 2 {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	v2 := writeMappings(t, fmt.Sprintf("mappings:\n  - name: a\n    source: public.%s\n    store: accounts\n    target: renamed\n    columns: {exclude: [secret]}\n", a))
	out, err = e.cli(t, "mappings", "apply", "-f", v2)
	if err != nil || !strings.Contains(out, "change a (fields [columns target])") || !strings.Contains(out, "remove b") {
		t.Fatalf("apply v2: %v\n%s", err, out)
	}
	out, err = e.cli(t, "mappings", "describe", "a")
	if err != nil || !strings.Contains(out, `"target": "renamed"`) || !strings.Contains(out, `"consumer_group": "`+e.prefix+`.a"`) {
		t.Fatalf("describe: %v\n%s", err, out)
	}
	if out, err := e.cli(t, "mappings", "remove", "a"); err != nil || out != "removed a\n" {
		t.Fatalf("remove: %v %q", err, out)
	}
	if _, err := e.cli(t, "mappings", "describe", "a"); err == nil || err.Error() != `no such mapping: "a" (see scoop mappings list)` {
		t.Fatalf("describe removed: %v", err)
	}
}

// TestMappingsBadFiles: each kind of bad file is refused with the mapping,
// the field and a fix, and changes nothing.
func TestMappingsBadFiles(t *testing.T) {
	a := createTable(t, 0)
	_, nokey := createTable(t, 0), testenv.Name("nokey")
	testenv.Exec(t, testenv.Conn(t, "monolith"), fmt.Sprintf(`CREATE TABLE %s (v text)`, schema.QuoteIdent(nokey)))
	full := testenv.Name("full")
	testenv.Exec(t, testenv.Conn(t, "monolith"), fmt.Sprintf(`CREATE TABLE %[1]s (v text, w text); ALTER TABLE %[1]s REPLICA IDENTITY FULL`, schema.QuoteIdent(full)))
	e := newE2E(t, "mappings: []\n")
	good := writeMappings(t, fmt.Sprintf("mappings:\n  - name: keep\n    source: public.%s\n    store: accounts\n", a))
	if _, err := e.cli(t, "mappings", "apply", "-f", good); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, body, want string }{
		{"unknown field", "mappings:\n  - name: x\n    source: public.%s\n    store: accounts\n    colums: {}\n",
			"invalid mappings: yaml: unmarshal errors:\n  line 5: field colums not found in type pipeline.Mapping (fix: check the field names and layout against docs/mappings.md)"},
		{"missing table", "mappings:\n  - name: x\n    source: public.no_such_%s\n    store: accounts\n",
			"invalid mappings:\nmapping x: field source: table public.no_such_%s does not exist in the monolith; create it or fix the mapping's source (fix: name an existing table with a primary key (or replica identity), as schema.table)"},
		{"missing column", "mappings:\n  - name: x\n    source: public.%s\n    store: accounts\n    columns: {exclude: [nope]}\n",
			"invalid mappings:\nmapping x: field columns: column \"nope\" does not exist in public.%s (fix: use a column of the source table)"},
		{"key excluded", "mappings:\n  - name: x\n    source: public.%s\n    store: accounts\n    columns: {exclude: [id]}\n",
			"invalid mappings:\nmapping x: field columns: key column \"id\" is excluded (fix: keep every primary-key column in the mapping)"},
		{"store without URL", "mappings:\n  - name: x\n    source: public.%s\n    store: billing\n",
			"invalid mappings:\nmapping x: field store: store \"billing\" has no URL (fix: set SCOOP_STORE_BILLING_URL to postgres://... or cassandra://host:port/keyspace)"},
		{"duplicate names", "mappings:\n  - name: x\n    source: public.%[1]s\n    store: accounts\n  - name: x\n    source: public.%[1]s\n    store: orders\n",
			"invalid mappings:\nmapping x: field name: duplicate name \"x\" (fix: rename one of the mappings)"},
		{"policy Cassandra cannot keep", "mappings:\n  - name: x\n    source: public.%s\n    store: orders\n    direction: both\n    conflict: monolith-wins\n",
			"invalid mappings:\nmapping x: field conflict: monolith-wins needs to know what each write was made on top of, which a Cassandra store cannot tell (fix: use conflict: last-writer-wins with a Cassandra store (see docs/reverse.md))"},
		{"two reverse flows into one table", "mappings:\n  - name: x\n    source: public.%[1]s\n    store: accounts\n    direction: both\n  - name: y\n    source: public.%[1]s\n    store: accounts\n    direction: both\n",
			"invalid mappings:\nmapping y: field direction: mapping \"x\" already writes table \"%s\" of store \"accounts\" with direction both; its writes cannot go back to two monolith tables (fix: keep direction: both on one of them)"},
		{"both without a key", "mappings:\n  - name: x\n    source: public." + full + "%.0s\n    store: accounts\n    direction: both\n",
			"invalid mappings:\nmapping x: field direction: public." + full + " has no primary key, so the service's writes cannot be matched to its rows (fix: add a primary key to the monolith table, or use direction: forward)"},
		{"rename that cannot be reversed", "mappings:\n  - name: x\n    source: public.%s\n    store: accounts\n    direction: both\n    columns: {rename: {note: amount}}\n",
			"invalid mappings:\nmapping x: field columns.rename: columns \"amount\" and \"note\" both become \"amount\" in the service, so its writes cannot be sent back (fix: give each service column its own name)"},
		{"no key", "mappings:\n  - name: x\n    source: public." + nokey + "%.0s\n    store: accounts\n",
			"invalid mappings:\nmapping x: field source: table public." + nokey + " has no primary key and no replica identity, so its updates and deletes cannot be keyed; add a primary key, or run ALTER TABLE \"public\"." + schema.QuoteIdent(nokey) + " REPLICA IDENTITY FULL (fix: name an existing table with a primary key (or replica identity), as schema.table)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeMappings(t, fmt.Sprintf(tc.body, a))
			_, err := e.cli(t, "mappings", "apply", "-f", path)
			want := path + ": " + strings.ReplaceAll(tc.want, "%s", a)
			if err == nil || err.Error() != want {
				t.Fatalf("got  %v\nwant %s", err, want)
			}
			out, _ := e.cli(t, "mappings", "list")
			if !strings.Contains(out, "keep") || strings.Contains(out, "\nx ") {
				t.Fatalf("a bad file changed the registry:\n%s", out)
			}
		})
	}
}

func countRows(db, table string) func() []string {
	return func() []string {
		c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
		if err != nil {
			return nil
		}
		defer c.Close(context.Background())
		var n int
		if err := c.QueryRow(context.Background(), fmt.Sprintf(`SELECT count(*) FROM %s`, schema.QuoteIdent(table))).Scan(&n); err != nil {
			return nil
		}
		return []string{fmt.Sprint(n)}
	}
}

// TestRuntimeAddAndRemove: a mapping added while scoop runs is snapshotted
// (incrementally, under concurrent writes) while another keeps streaming;
// removing it takes its table out of the publication.
func TestRuntimeAddAndRemove(t *testing.T) {
	streaming, added := createTable(t, 0), createTable(t, 20000)
	e := newE2E(t, "mappings: []\n")
	first := writeMappings(t, fmt.Sprintf("mappings:\n  - name: streaming\n    source: public.%s\n    store: accounts\n", streaming))
	if _, err := e.cli(t, "mappings", "apply", "-f", first); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SCOOP_SNAPSHOT_CHUNK_ROWS", "1000")
	d := startProc(t, append(e.withoutFile(), "SCOOP_SNAPSHOT_CHUNK_ROWS=1000"))
	mono := testenv.Conn(t, "monolith")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // writes to both tables during the whole test
		defer close(done)
		w, _ := pgx.Connect(context.Background(), testenv.PGURL("monolith"))
		defer w.Close(context.Background())
		for i := 1; ctx.Err() == nil; i++ {
			if _, err := w.Exec(context.Background(), fmt.Sprintf(`INSERT INTO %s VALUES ($1, $2, 'live', 's')`, schema.QuoteIdent(streaming)), i, i); err != nil {
				t.Error(err)
				return
			}
			w.Exec(context.Background(), fmt.Sprintf(`UPDATE %s SET amount = amount + 1, note = 'upd' WHERE id = $1`, schema.QuoteIdent(added)), 1+(i*7919)%20000)
			if i%5 == 0 {
				w.Exec(context.Background(), fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, schema.QuoteIdent(added)), 1+(i*104729)%20000)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	// Wait until the first mapping streams.
	for deadline := time.Now().Add(60 * time.Second); ; {
		if n := countRows("service", streaming)(); len(n) == 1 && n[0] != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first mapping never streamed\n%s", tail(d.logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	both := writeMappings(t, fmt.Sprintf("mappings:\n  - name: streaming\n    source: public.%s\n    store: accounts\n  - name: added\n    source: public.%s\n    store: accounts\n    columns: {exclude: [secret]}\n", streaming, added))
	if out, err := e.cli(t, "mappings", "apply", "-f", both); err != nil || !strings.Contains(out, "add    added") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	// The streaming mapping keeps flowing during the snapshot.
	before := countRows("service", streaming)()
	time.Sleep(1500 * time.Millisecond)
	if after := countRows("service", streaming)(); len(before) == 1 && len(after) == 1 && after[0] == before[0] {
		t.Fatalf("streaming mapping stalled during the incremental snapshot at %s rows\n%s", after[0], tail(d.logs(), 4000))
	}
	time.Sleep(time.Second)
	cancel()
	<-done
	waitEqual(t, d, "streaming", pgOrders(t, "monolith", streaming), pgOrders(t, "service", streaming))
	waitEqual(t, d, "added at run time", pgOrders(t, "monolith", added), pgOrders(t, "service", added))
	if !strings.Contains(d.logs(), "incremental snapshot complete") {
		t.Fatalf("no incremental snapshot in the log:\n%s", tail(d.logs(), 2000))
	}

	// Remove: the table leaves the publication, the consumer stops.
	if _, err := e.cli(t, "mappings", "remove", "added"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		mono.QueryRow(context.Background(), `SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 AND tablename = $2`, e.slot, added).Scan(&n)
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("removed mapping's table is still in the publication")
		}
		time.Sleep(200 * time.Millisecond)
	}
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (99999, 1, 'after removal', 's')`, schema.QuoteIdent(added)))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (99999, 1, 'still streaming', 's')`, schema.QuoteIdent(streaming)))
	waitEqual(t, d, "streaming after removal", pgOrders(t, "monolith", streaming), pgOrders(t, "service", streaming))
	var n int
	testenv.Conn(t, "service").QueryRow(context.Background(), fmt.Sprintf(`SELECT count(*) FROM %s WHERE id = 99999`, schema.QuoteIdent(added))).Scan(&n)
	if n != 0 {
		t.Fatal("a removed mapping still applied changes")
	}
}

func TestReplay(t *testing.T) {
	table := createTable(t, 300)
	e := newE2E(t, "mappings: []\n")
	file := writeMappings(t, fmt.Sprintf("mappings:\n  - name: r\n    source: public.%s\n    store: accounts\n", table))
	if _, err := e.cli(t, "mappings", "apply", "-f", file); err != nil {
		t.Fatal(err)
	}
	d := startProc(t, e.withoutFile())
	mono := testenv.Conn(t, "monolith")
	svc := testenv.Conn(t, "service")
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = 'changed' WHERE id <= 50`, schema.QuoteIdent(table)))
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id > 280`, schema.QuoteIdent(table)))
	waitEqual(t, d, "before replay", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	truncate := func() {
		testenv.Exec(t, svc, fmt.Sprintf(`TRUNCATE %s`, schema.QuoteIdent(table)))
		if n := countRows("service", table)(); n[0] != "0" {
			t.Fatal("truncate failed")
		}
	}

	t.Run("bad offset", func(t *testing.T) {
		_, err := e.cli(t, "replay", "r", "--from-offset", "100000", "--wait", "0")
		topic := e.prefix + ".public." + table
		if err == nil || !strings.HasPrefix(err.Error(), "offset out of range: offset 100000 of topic "+topic+" partition 0: the partition holds offsets 0 to ") {
			t.Fatalf("got %v", err)
		}
		_, err = e.cli(t, "replay", "r", "--from-offset", "0", "--partition", "7", "--wait", "0")
		if err == nil || err.Error() != "offset out of range: topic "+topic+" has no partition 7 (partitions 0 to 2)" {
			t.Fatalf("got %v", err)
		}
		_, err = e.cli(t, "replay", "r", "--from-time", "yesterday")
		if err == nil || err.Error() != `scoop replay: --from-time "yesterday" is not RFC 3339 (e.g. 2026-11-25T10:00:00Z)` {
			t.Fatalf("got %v", err)
		}
		_, err = e.cli(t, "replay", "nope", "--snapshot")
		if err == nil || err.Error() != `no such mapping: "nope" (see scoop mappings list)` {
			t.Fatalf("got %v", err)
		}
		_, err = e.cli(t, "replay", "r", "--snapshot", "--from-offset", "3")
		if err == nil || err.Error() != "scoop replay: give exactly one of --from-offset N, --from-time RFC3339 or --snapshot" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("from offset after truncate", func(t *testing.T) {
		truncate()
		out, err := e.cli(t, "replay", "r", "--from-offset", "0", "--wait", "60s")
		if err != nil || !strings.Contains(out, "generation 1") || !strings.Contains(out, "caught up") {
			t.Fatalf("%v\n%s", err, out)
		}
		waitEqual(t, d, "replayed from offset 0", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	})
	t.Run("from time after truncate", func(t *testing.T) {
		truncate()
		out, err := e.cli(t, "replay", "r", "--from-time", "2000-01-01T00:00:00Z", "--wait", "60s")
		if err != nil || !strings.Contains(out, "generation 2") || !strings.Contains(out, "caught up") {
			t.Fatalf("%v\n%s", err, out)
		}
		waitEqual(t, d, "replayed from a time", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	})
	t.Run("snapshot after truncate", func(t *testing.T) {
		truncate()
		testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = 'after' WHERE id = 1`, schema.QuoteIdent(table)))
		out, err := e.cli(t, "replay", "r", "--snapshot", "--wait", "60s")
		if err != nil || !strings.Contains(out, "snapshot of public."+table+" copied") {
			t.Fatalf("%v\n%s", err, out)
		}
		waitEqual(t, d, "re-snapshotted", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	})
}

var _ = os.Getenv
