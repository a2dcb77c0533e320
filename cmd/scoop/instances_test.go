package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// monolithDatabase creates a fresh monolith database (no schema scoop yet)
// holding one orders-like table with rows, and points the e2e environment's
// source at it. The slot and the database are dropped when the test ends,
// after the processes started later were killed.
func monolithDatabase(t *testing.T, e *e2e, rows int) (db, table string) {
	t.Helper()
	db, table = testenv.Name("mono"), testenv.Name("m")
	admin := testenv.Conn(t, "postgres")
	testenv.Exec(t, admin, "CREATE DATABASE "+schema.QuoteIdent(db))
	t.Cleanup(func() {
		ctx := context.Background()
		if c, err := pgx.Connect(ctx, testenv.PGURL(db)); err == nil {
			c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, e.slot)
			c.Close(ctx)
		}
		admin.Exec(ctx, "DROP DATABASE IF EXISTS "+schema.QuoteIdent(db)+" WITH (FORCE)")
	})
	mono := testenv.Conn(t, db)
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text)`, schema.QuoteIdent(table)))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g FROM generate_series(1, %d) g`, schema.QuoteIdent(table), rows))
	for i, kv := range e.env {
		if strings.HasPrefix(kv, "SCOOP_SOURCE_URL=") {
			e.env[i] = "SCOOP_SOURCE_URL=" + testenv.PGURL(db)
		}
	}
	return db, table
}

// waitExit waits for a process to stop on its own and returns its log.
func waitExit(t *testing.T, d *proc, within time.Duration) (string, error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		return d.logs(), err
	case <-time.After(within):
		t.Fatalf("scoop did not stop within %s\n%s", within, tail(d.logs(), 3000))
		return "", nil
	}
}

// TestInstancesStartTogether: two instances started at the same moment on a
// monolith where scoop never ran (as a Deployment with two replicas starts)
// both prepare the registry and start; then, during a rolling deploy, an
// instance restarting with the previous mappings file does not revert the
// registry: it refuses to start with the fix, and the newer mappings keep
// flowing.
func TestInstancesStartTogether(t *testing.T) {
	e := newE2E(t, "mappings: []\n")
	db, table := monolithDatabase(t, e, 50)
	v1 := fmt.Sprintf("mappings:\n  - name: deploy-pg\n    source: public.%s\n    store: accounts\n", table)
	v2 := v1 + fmt.Sprintf("  - name: deploy-v2\n    source: public.%[1]s\n    store: accounts\n    target: %[1]s_v2\n", table)
	withFile := func(body string) []string {
		return append(e.withoutFile(), "SCOOP_MAPPINGS_FILE="+writeMappings(t, body))
	}
	envV1 := withFile(v1)
	a, b := startProc(t, envV1), startProc(t, envV1)
	waitEqual(t, a, "two instances started together", pgOrders(t, db, table), pgOrders(t, "service", table))
	for name, d := range map[string]*proc{"A": a, "B": b} {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(d.logs(), "scoop starting") {
			if d.cmd.ProcessState != nil || time.Now().After(deadline) {
				t.Fatalf("instance %s did not start:\n%s", name, tail(d.logs(), 3000))
			}
			time.Sleep(100 * time.Millisecond)
		}
		if strings.Contains(d.logs(), "23505") {
			t.Fatalf("instance %s met the start-up race:\n%s", name, tail(d.logs(), 3000))
		}
	}

	// The rolling deploy: the new file is applied, the new release (A)
	// follows it; an instance of the old release (B) restarts with v1.
	v2path := writeMappings(t, v2)
	if out, err := e.cli(t, "mappings", "apply", "-f", v2path); err != nil || !strings.Contains(out, "add    deploy-v2") {
		t.Fatalf("apply v2: %v\n%s", err, out)
	}
	a.kill()
	a = startProc(t, withFile(v2)) // the same file: starts
	b.kill()
	b = startProc(t, envV1)
	logs, err := waitExit(t, b, 60*time.Second)
	if err == nil || !strings.Contains(logs, "the mappings file is not the one the registry was last applied from") ||
		!strings.Contains(logs, "scoop run never reverts the registry (fix: run scoop mappings apply -f FILE") {
		t.Fatalf("the old instance with v1: exit %v\n%s", err, tail(logs, 3000))
	}
	out, err := e.cli(t, "mappings", "list")
	if err != nil || !strings.Contains(out, "deploy-v2") {
		t.Fatalf("the registry was reverted to v1: %v\n%s", err, out)
	}
	testenv.Exec(t, testenv.Conn(t, db), fmt.Sprintf(`UPDATE %s SET note = 'after deploy' WHERE id <= 5`, schema.QuoteIdent(table)))
	waitEqual(t, a, "v2 mapping after the revert attempt", pgOrders(t, db, table), pgOrders(t, "service", table+"_v2"))
	if strings.Contains(a.logs(), "the mappings file is not the one") {
		t.Fatalf("the instance with the applied file was refused:\n%s", tail(a.logs(), 3000))
	}
}
