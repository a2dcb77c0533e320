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
	Rows      int64 `json:"source_rows"`
	Missing   int64 `json:"missing"`
	Extra     int64 `json:"extra"`
	Different int64 `json:"different"`
	Repaired  int   `json:"repaired"`
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

// TestVerifyRepairRefusedAfterFlip: once a mapping is flipped to the
// service, --repair (which re-sends the monolith's rows) is refused with
// the reason and the way out; verify itself still runs.
func TestVerifyRepairRefusedAfterFlip(t *testing.T) {
	table := createTable(t, 5)
	file := fmt.Sprintf("mappings:\n  - {name: flipped, source: public.%s, store: accounts, target: %s_svc, direction: both}\n", table, table)
	e := newE2E(t, file)
	if out, err := e.cli(t, "mappings", "apply", "-f", writeMappings(t, file)); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := postgres.SetOwner(context.Background(), testenv.PGURL("monolith"), e.slot, "flipped", postgres.OwnerService, 0); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runVerify(t, e.env, "flipped", "--repair", "--quiet")
	want := "scoop: verify flipped --repair: the mapping was flipped to the service, whose copy is now the table's truth; repair re-sends the monolith's rows and would overwrite the service's writes (flip back first with `scoop mappings flip flipped --back`, or verify without --repair)"
	if code != 2 || !strings.Contains(errs, want) {
		t.Fatalf("exit %d:\n%s\nwant:\n%s", code, errs, want)
	}
}
