package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/connectors/cassandra/servicewriter"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// runVerify runs the scoop binary's verify command.
func runVerify(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"verify"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

type verifyReport struct {
	Rows      int64  `json:"source_rows"`
	Missing   int64  `json:"missing"`
	Extra     int64  `json:"extra"`
	Different int64  `json:"different"`
	Repaired  int    `json:"repaired"`
	Reference string `json:"reference"`
	Diffs     []struct {
		Kind string            `json:"kind"`
		Key  map[string]string `json:"key"`
	} `json:"diffs"`
}

// diffs lists a report's differences as "kind id", sorted.
func (r *verifyReport) diffs() []string {
	var out []string
	for _, d := range r.Diffs {
		out = append(out, d.Kind+" "+d.Key["id"])
	}
	sort.Strings(out)
	return out
}

func verifyJSON(t *testing.T, env []string, args ...string) (int, *verifyReport, string) {
	t.Helper()
	code, out, errs := runVerify(t, env, append(args, "--json", "--quiet")...)
	var r verifyReport
	if code != 2 {
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("verify %v: exit %d, output not JSON: %v\n%s\n%s", args, code, err, out, errs)
		}
	}
	return code, &r, errs
}

// TestVerify runs verify against a PostgreSQL and a Cassandra target of one
// table fed by a running scoop: clean, tampered, repaired, under concurrent
// writes, and with bad input.
func TestVerify(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	table := testenv.Name("ver")
	q := schema.QuoteIdent(table)
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text,
		at timestamptz, tags text[], doc jsonb, raw bytea, secret text)`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g * 1.5, CASE WHEN g %% 10 = 0 THEN NULL ELSE 'n' || g END,
		'2026-01-02 03:04:05.123456+00'::timestamptz + g * interval '1 second',
		CASE WHEN g %% 7 = 0 THEN '{}'::text[] ELSE ARRAY['a', 'b' || g] END,
		jsonb_build_object('g', g, 'x', 'y'), decode(lpad(to_hex(g), 4, '0'), 'hex'), 's'
		FROM generate_series(1, 300) g`, q))
	e := newE2E(t, fmt.Sprintf(`mappings:
  - name: ver-pg
    source: public.%[1]s
    store: accounts
    columns: {exclude: [secret], rename: {note: memo}, types: {amount: text}}
  - name: ver-cass
    source: public.%[1]s
    store: orders
    columns: {exclude: [secret], rename: {note: memo}}
`, table))
	d := startProc(t, e.env)
	svc := testenv.Conn(t, "service")
	// Wait until both targets have rows; verify itself then waits for the
	// pipeline to catch up before it reports a row as different.
	deadline := time.Now().Add(90 * time.Second)
	cass := cassandraSession(t, "system")
	for {
		var n, m int
		svc.QueryRow(context.Background(), fmt.Sprintf(`SELECT count(*) FROM %s`, q)).Scan(&n)
		cass.Query(fmt.Sprintf(`SELECT count(*) FROM %s.%s`, schema.QuoteIdent(e.keyspace), q)).Scan(&m)
		if n == 300 && m == 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets not filled: %d and %d rows\n%s", n, m, tail(d.logs(), 3000))
		}
		time.Sleep(300 * time.Millisecond)
	}

	t.Run("clean", func(t *testing.T) {
		for _, name := range []string{"ver-pg", "ver-cass"} {
			code, r, errs := verifyJSON(t, e.env, name, "--chunk-rows", "64")
			if code != 0 || len(r.Diffs) != 0 || r.Rows != 300 {
				t.Fatalf("%s: exit %d, %d rows, diffs %v\n%s", name, code, r.Rows, r.diffs(), errs)
			}
		}
		code, out, errs := runVerify(t, e.env, "--all")
		if code != 0 || !strings.Contains(out, "verify ver-pg: public."+table+" -> accounts."+table+": equal: 300 rows") ||
			!strings.Contains(out, "verify ver-cass: public."+table+" -> orders."+table+": equal: 300 rows") {
			t.Fatalf("--all: exit %d\n%s\n%s", code, out, errs)
		}
	})

	t.Run("tampered", func(t *testing.T) {
		testenv.Exec(t, svc, fmt.Sprintf(`UPDATE %s SET memo = 'tampered' WHERE id = 5`, q))
		// Alone in its key range (--chunk-rows 64): only the range's hash
		// sum, not its count, shows it.
		testenv.Exec(t, svc, fmt.Sprintf(`UPDATE %s SET at = at + interval '1 microsecond' WHERE id = 200`, q))
		testenv.Exec(t, svc, fmt.Sprintf(`DELETE FROM %s WHERE id = 7`, q))
		testenv.Exec(t, svc, fmt.Sprintf(`INSERT INTO %s (id, amount, memo) VALUES (10001, '1', 'ghost')`, q))
		ct := schema.QuoteIdent(e.keyspace) + "." + q
		for _, cql := range []string{
			`UPDATE ` + ct + ` SET memo = 'tampered' WHERE id = 5`,
			`UPDATE ` + ct + ` SET tags = ['x'] WHERE id = 14`, // was empty (NULL in Cassandra)
			`DELETE FROM ` + ct + ` WHERE id = 7`,
			`INSERT INTO ` + ct + ` (id, memo) VALUES (10001, 'ghost')`,
		} {
			if err := cass.Query(cql).Exec(); err != nil {
				t.Fatal(err)
			}
		}
		want := map[string][]string{
			"ver-pg":   {"different 200", "different 5", "extra 10001", "missing 7"},
			"ver-cass": {"different 14", "different 5", "extra 10001", "missing 7"},
		}
		for name, w := range want {
			code, r, errs := verifyJSON(t, e.env, name, "--chunk-rows", "64")
			if code != 1 || strings.Join(r.diffs(), ",") != strings.Join(w, ",") || r.Missing != 1 || r.Extra != 1 || r.Different != 2 {
				t.Fatalf("%s: exit %d, diffs %v (want %v)\n%s", name, code, r.diffs(), w, errs)
			}
		}
	})

	t.Run("repair", func(t *testing.T) {
		// Both mappings read the table's topic: the rows ver-pg's repair
		// sends again reach ver-cass too, which then has only row 14 left.
		// In this order: ver-pg repairs all four of its keys.
		for _, c := range []struct {
			name string
			want int
		}{{"ver-pg", 4}, {"ver-cass", 1}} {
			name := c.name
			code, r, errs := verifyJSON(t, e.env, name, "--repair")
			if code != 0 || r.Repaired < c.want || len(r.Diffs) != 0 {
				t.Fatalf("%s --repair: exit %d, repaired %d, diffs %v\n%s\n%s", name, code, r.Repaired, r.diffs(), errs, tail(d.logs(), 2000))
			}
			code, r, errs = verifyJSON(t, e.env, name)
			if code != 0 || len(r.Diffs) != 0 {
				t.Fatalf("%s after repair: exit %d, diffs %v\n%s", name, code, r.diffs(), errs)
			}
		}
		// The source kept its data: repair reads it, never writes it.
		var memo string
		mono.QueryRow(context.Background(), fmt.Sprintf(`SELECT note FROM %s WHERE id = 5`, q)).Scan(&memo)
		if memo != "n5" {
			t.Fatalf("monolith row 5 changed: %q", memo)
		}
	})

	t.Run("concurrent writes", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var writes atomic.Int64
		w := testenv.Conn(t, "monolith")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := 1 + i%300
				w.Exec(ctx, fmt.Sprintf(`UPDATE %s SET amount = amount + 1, note = 'w%d' WHERE id = %d`, q, i, id))
				w.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (id, amount, note) VALUES (%d, 1, 'new') ON CONFLICT (id) DO NOTHING`, q, 20000+i))
				w.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = %d`, q, 20000+i-3))
				writes.Add(3)
			}
		}()
		// Hot rows: changed every 50 ms for the whole run.
		hot := testenv.Conn(t, "monolith")
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				hot.Exec(ctx, fmt.Sprintf(`UPDATE %s SET note = 'hot%d' WHERE id IN (1, 2, 3)`, q, i))
			}
		}()
		defer func() { cancel(); wg.Wait() }()
		for _, name := range []string{"ver-pg", "ver-cass"} {
			code, r, errs := verifyJSON(t, e.env, name, "--chunk-rows", "32", "--max-rows-per-second", "2000")
			if code != 0 || len(r.Diffs) != 0 {
				t.Fatalf("%s under writes: exit %d, diffs %v\n%s", name, code, r.diffs(), errs)
			}
		}
		if writes.Load() < 30 {
			t.Fatalf("only %d writes ran during verify", writes.Load())
		}
	})

	t.Run("errors", func(t *testing.T) {
		code, _, errs := runVerify(t, e.env, "no-such-mapping")
		if code != 2 || !strings.Contains(errs, `no such mapping: "no-such-mapping"`) {
			t.Fatalf("bad name: exit %d: %s", code, errs)
		}
		env := append(append([]string{}, e.env...), "SCOOP_STORE_ORDERS_URL=cassandra://127.0.0.1:1/"+e.keyspace, "SCOOP_STORE_ACCOUNTS_URL=postgres://scoop@127.0.0.1:1/service")
		code, _, errs = runVerify(t, env, "ver-cass")
		if code != 2 || !strings.Contains(errs, "verify ver-cass: connect to store orders") {
			t.Fatalf("unreachable Cassandra: exit %d: %s", code, errs)
		}
		code, _, errs = runVerify(t, env, "ver-pg")
		if code != 2 || !strings.Contains(errs, "verify ver-pg: connect to store accounts") {
			t.Fatalf("unreachable PostgreSQL: exit %d: %s", code, errs)
		}
		code, _, errs = runVerify(t, e.env)
		if code != 2 || !strings.Contains(errs, "usage: scoop verify NAME") {
			t.Fatalf("no name: exit %d: %s", code, errs)
		}
	})
}

// TestVerifyUsage: verify without a mapping, or with both a name and
// --all, exits 2 with the usage.
func TestVerifyUsage(t *testing.T) {
	for _, args := range [][]string{{"verify"}, {"verify", "x", "--all"}, {"verify", "--bogus"}} {
		var out, errb bytes.Buffer
		code := runMain(args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "scoop verify") {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
	}
}

// TestVerifyRepairAfterTruncate: once a truncate of the table was applied,
// the sinks skip records positioned before it; a repair's records must be
// positioned after it, or the repair is silently dropped.
func TestVerifyRepairAfterTruncate(t *testing.T) {
	table := createTable(t, 40)
	q := schema.QuoteIdent(table)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: rt-pg\n    source: public.%s\n    store: accounts\n", table))
	d := startProc(t, e.env)
	mono := testenv.Conn(t, "monolith")
	testenv.Exec(t, mono, fmt.Sprintf(`BEGIN; TRUNCATE %[1]s; INSERT INTO %[1]s SELECT g, g, 'reloaded' FROM generate_series(1, 30) g; COMMIT`, q))
	waitEqual(t, d, "after the truncate", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	svc := testenv.Conn(t, "service")
	testenv.Exec(t, svc, fmt.Sprintf(`UPDATE %s SET note = 'tampered' WHERE id = 3`, q))
	if code, r, errs := verifyJSON(t, e.env, "rt-pg", "--repair"); code != 0 || r.Repaired != 1 {
		t.Fatalf("--repair: exit %d, repaired %d, diffs %v\n%s\n%s", code, r.Repaired, r.diffs(), errs, tail(d.logs(), 2000))
	}
	if code, r, errs := verifyJSON(t, e.env, "rt-pg"); code != 0 {
		t.Fatalf("after repair: exit %d, diffs %v\n%s", code, r.diffs(), errs)
	}
}

// TestVerifyRepairAfterFlip: once a mapping is flipped to the service,
// verify compares the monolith's copy against the service's table. Rows
// changed, deleted and inserted in the monolith's copy (through the fence
// the way scoop's reverse apply passes it, and marked as that flow, so that
// the forward flow does not carry them to the service) are found with the
// service as the reference; --repair re-sends the service's rows, and a
// delete of the row only the monolith has, through the reverse flow; a
// second verify is clean, and the service's rows were never touched.
func TestVerifyRepairAfterFlip(t *testing.T) {
	table := createTable(t, 20)
	svcTable := table + "_svc"
	q := schema.QuoteIdent(table)
	e := newE2E(t, fmt.Sprintf(`mappings:
  - {name: vflip, source: public.%s, store: accounts, target: %s, direction: both, conflict: last-writer-wins, columns: {rename: {note: remark}, exclude: [secret]}}
`, table, svcTable))
	dropReverseSlot(t, e.slot+"_rev_accounts")
	d := startProc(t, e.env)
	mono := query(t, "monolith", fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(note, '') FROM %s ORDER BY id`, q))
	svc := query(t, "service", fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(remark, '') FROM %s ORDER BY id`, schema.QuoteIdent(svcTable)))
	waitEqual(t, d, "snapshot -> service", mono, svc)
	waitReverse(t, d, 1)
	if out, err := e.cli(t, "mappings", "flip", "vflip", "--timeout", "90s"); err != nil {
		t.Fatalf("flip: %v\n%s\n%s", err, out, tail(d.logs(), 3000))
	}
	// The service writes as the owner; the monolith follows.
	s := testenv.Conn(t, "service")
	testenv.Exec(t, s, fmt.Sprintf(`UPDATE %s SET remark = 'service owns it' WHERE id = 1`, schema.QuoteIdent(svcTable)))
	waitEqual(t, d, "service -> monolith", svc, mono)
	before := svc()

	m := testenv.Conn(t, "monolith")
	testenv.Exec(t, m, fmt.Sprintf(`BEGIN;
		SELECT set_config('scoop.applying', 'reverse:vflip', true);
		SELECT pg_logical_emit_message(true, 'scoop-origin', 'reverse:vflip');
		UPDATE %[1]s SET note = 'damaged' WHERE id = 3;
		DELETE FROM %[1]s WHERE id = 4;
		INSERT INTO %[1]s (id, amount, note, secret) VALUES (1001, 1, 'ghost', 's');
		COMMIT`, q))
	want := "different 3,extra 1001,missing 4"
	code, r, errs := verifyJSON(t, e.env, "vflip")
	if code != 1 || strings.Join(r.diffs(), ",") != want || r.Reference != "service" {
		t.Fatalf("verify: exit %d, reference %q, diffs %v (want %s)\n%s", code, r.Reference, r.diffs(), want, errs)
	}
	code, out, errs := runVerify(t, e.env, "vflip", "--quiet")
	if line := "verify vflip: accounts." + svcTable + " (flipped: the service owns it) -> public." + table + ": DIFFERENT: 20 rows, 1 missing, 1 extra, 1 different"; code != 1 || !strings.Contains(out, line) {
		t.Fatalf("verify: exit %d\n%s\nwant: %s\n%s", code, out, line, errs)
	}
	code, r, errs = verifyJSON(t, e.env, "vflip", "--repair")
	if code != 0 || r.Repaired != 3 || len(r.Diffs) != 0 {
		t.Fatalf("--repair: exit %d, repaired %d, diffs %v\n%s\n%s", code, r.Repaired, r.diffs(), errs, tail(d.logs(), 3000))
	}
	if !strings.Contains(errs, "republished 2 of the service's rows and 1 deletes to "+e.prefix+".reverse.vflip") {
		t.Errorf("--repair does not say what it sent:\n%s", errs)
	}
	if code, r, errs := verifyJSON(t, e.env, "vflip"); code != 0 || len(r.Diffs) != 0 {
		t.Fatalf("after repair: exit %d, diffs %v\n%s", code, r.diffs(), errs)
	}
	if got, want := mono(), svc(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("monolith after repair:\n%s", rowDiff(want, got))
	}
	if after := svc(); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("the repair changed the service's rows:\n%s", rowDiff(before, after))
	}

	ctx := context.Background()

	// A suspect waits for the reverse flow. The monolith's table is locked
	// against the reverse apply, holding back a service write for longer
	// than verify's re-reads of a changed row last (1 s): verify must wait
	// until the reverse consumer group applied it, not report the row.
	held := verifyHeldBack(t, d, e.env, q, "vflip", func() {
		testenv.Exec(t, s, fmt.Sprintf(`UPDATE %s SET remark = 'held back' WHERE id = 6`, schema.QuoteIdent(svcTable)))
	})
	if !strings.Contains(held, `"diffs": []`) {
		t.Fatalf("verify while the reverse apply was held back:\n%s", held)
	}

	// The service writes during a run: no false differences.
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var writes atomic.Int64
	w := testenv.Conn(t, "service")
	st := schema.QuoteIdent(svcTable)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			w.Exec(wctx, fmt.Sprintf(`UPDATE %s SET amount = amount + 1, remark = 'w%d' WHERE id = %d`, st, i, 1+i%20))
			w.Exec(wctx, fmt.Sprintf(`INSERT INTO %s (id, amount, remark) VALUES (%d, 1, 'new') ON CONFLICT (id) DO NOTHING`, st, 5000+i))
			w.Exec(wctx, fmt.Sprintf(`DELETE FROM %s WHERE id = %d`, st, 5000+i-3))
			writes.Add(3)
		}
	}()
	code, r, errs = verifyJSON(t, e.env, "vflip", "--chunk-rows", "8", "--max-rows-per-second", "200")
	cancel()
	wg.Wait()
	if code != 0 || len(r.Diffs) != 0 {
		t.Fatalf("verify under the service's writes: exit %d, diffs %v\n%s", code, r.diffs(), errs)
	}
	if writes.Load() < 30 {
		t.Fatalf("only %d writes ran during verify", writes.Load())
	}
}

// TestVerifyAfterFlipToCassandra: once a mapping to a Cassandra store is
// flipped, verify compares the monolith's copy against the Cassandra table:
// a service write whose reverse apply is held back is waited for (the
// reverse consumer group), not reported; rows changed, deleted and inserted
// in the monolith's copy are found with the service as the reference.
func TestVerifyAfterFlipToCassandra(t *testing.T) {
	ctx := context.Background()
	table := createTable(t, 10)
	q := schema.QuoteIdent(table)
	e := newE2E(t, fmt.Sprintf(`mappings:
  - {name: vcass, source: public.%s, store: orders, direction: both, columns: {rename: {note: remark}, exclude: [secret]}}
`, table))
	d := startProc(t, e.env)
	mono := query(t, "monolith", fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(note, '-') FROM %s`, q))
	cass := cassandraRenamed(t, e.keyspace, table)
	waitEqual(t, d, "snapshot -> Cassandra", mono, cass)
	waitFor(t, d, "reverse flow started", 60*time.Second, func() (bool, string) { return strings.Contains(d.logs(), "reverse flow started"), "" })
	if out, err := e.cli(t, "mappings", "flip", "vcass", "--timeout", "90s"); err != nil {
		t.Fatalf("flip: %v\n%s\n%s", err, out, tail(d.logs(), 3000))
	}
	sw, err := servicewriter.New(ctx, servicewriter.Config{
		Brokers: []string{testenv.Broker()}, TopicPrefix: e.prefix, Mapping: "vcass",
		Session: cassandraSession(t, e.keyspace), Keyspace: e.keyspace, Table: table,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sw.Close(cctx)
	})

	// The reverse apply held back (the monolith's table locked against
	// it) for longer than verify's re-reads of a changed row last.
	held := verifyHeldBack(t, d, e.env, q, "vcass", func() {
		if err := sw.Upsert(ctx, map[string]any{"id": 6, "amount": "6.00", "remark": "held back"}); err != nil {
			t.Fatal(err)
		}
	})
	if !strings.Contains(held, `"diffs": []`) || !strings.Contains(held, `"reference": "service"`) {
		t.Fatalf("verify while the reverse apply was held back:\n%s", held)
	}

	m := testenv.Conn(t, "monolith")
	testenv.Exec(t, m, fmt.Sprintf(`BEGIN;
		SELECT set_config('scoop.applying', 'reverse:vcass', true);
		SELECT pg_logical_emit_message(true, 'scoop-origin', 'reverse:vcass');
		UPDATE %[1]s SET note = 'damaged' WHERE id = 3;
		DELETE FROM %[1]s WHERE id = 4;
		INSERT INTO %[1]s (id, amount, note, secret) VALUES (1001, 1, 'ghost', 's');
		COMMIT`, q))
	want := "different 3,extra 1001,missing 4"
	code, r, errs := verifyJSON(t, e.env, "vcass")
	if code != 1 || strings.Join(r.diffs(), ",") != want || r.Reference != "service" {
		t.Fatalf("verify: exit %d, reference %q, diffs %v (want %s)\n%s", code, r.Reference, r.diffs(), want, errs)
	}
}

// TestVerifyRepairRefusedFromLosingSide: under service-wins a repair from
// the monolith would publish rows the service refuses: it is refused up
// front with the reason.
func TestVerifyRepairRefusedFromLosingSide(t *testing.T) {
	table := createTable(t, 5)
	file := fmt.Sprintf("mappings:\n  - {name: loser, source: public.%s, store: accounts, direction: both, conflict: service-wins}\n", table)
	e := newE2E(t, file)
	if out, err := e.cli(t, "mappings", "apply", "-f", writeMappings(t, file)); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	code, _, errs := runVerify(t, e.env, "loser", "--repair", "--quiet")
	want := "scoop: verify loser --repair: the repair would publish the monolith's rows, and under conflict: service-wins the other side applies a write of the monolith only if it was made on top of the other side's current version, which a repaired row cannot say: it would be refused wherever the other side has the row or remembers its delete; the rows stay different until the other side writes them again (verify without --repair lists them)\n"
	if code != 2 || errs != want {
		t.Fatalf("exit %d:\n%s\nwant:\n%s", code, errs, want)
	}
}

// TestVerifyRepairRefusedAfterFlipToCassandra: once a mapping to a
// Cassandra store is flipped, --repair is refused with the reason; verify
// itself still runs.
func TestVerifyRepairRefusedAfterFlipToCassandra(t *testing.T) {
	table := createTable(t, 5)
	file := fmt.Sprintf("mappings:\n  - {name: flipped, source: public.%s, store: orders, direction: both}\n", table)
	e := newE2E(t, file)
	if out, err := e.cli(t, "mappings", "apply", "-f", writeMappings(t, file)); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := postgres.SetOwner(context.Background(), testenv.PGURL("monolith"), e.slot, "flipped", postgres.OwnerService, 0); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runVerify(t, e.env, "flipped", "--repair", "--quiet")
	want := "scoop: verify flipped --repair: the mapping was flipped to the service, whose Cassandra table is now the table's truth; a repair would read the service's rows and publish them to the reverse topic, but Cassandra has no lock or snapshot that orders that read against the service's own writes (servicewriter publishes each write before making it), so a row read just before a write could be sent with a newer version than that write and overwrite it in both stores; rewrite the differing rows through the service's servicewriter instead, or verify without --repair\n"
	if code != 2 || errs != want {
		t.Fatalf("exit %d:\n%s\nwant:\n%s", code, errs, want)
	}
}

// verifyHeldBack locks the monolith table q against the reverse apply, makes
// a service write (write), waits until the reverse apply waits for the lock,
// runs verify NAME --json, and releases the lock after 5 s (verify must wait
// for the reverse flow, not report the row): verify's output, after it
// exited 0.
func verifyHeldBack(t *testing.T, d *proc, env []string, q, name string, write func()) string {
	t.Helper()
	ctx := context.Background()
	m := testenv.Conn(t, "monolith")
	tx, err := testenv.Conn(t, "monolith").Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE "+q+" IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	write()
	waitFor(t, d, "the reverse apply waiting for the lock", 30*time.Second, func() (bool, string) {
		var n int
		err := m.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE relation = to_regclass($1) AND NOT granted`, q).Scan(&n)
		return n > 0, fmt.Sprint(n, err)
	})
	cmd := exec.Command(binary, "verify", name, "--json", "--quiet")
	cmd.Env = append(os.Environ(), env...)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-exited:
		exited = nil
	case <-time.After(5 * time.Second): // the flow held back this long
	}
	tx.Rollback(ctx)
	if exited != nil {
		waitErr = <-exited
	}
	if waitErr != nil {
		t.Fatalf("verify while the reverse apply was held back: %v\n%s\n%s", waitErr, out.String(), errs.String())
	}
	return out.String()
}
