package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// TestReplaySnapshotKeepsSlot: `replay --snapshot` of the only copied table
// keeps the slot, so rows deleted while scoop was stopped are deleted in the
// store too (no ghost rows from a recreated slot).
func TestReplaySnapshotKeepsSlot(t *testing.T) {
	table := createTable(t, 100)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: only\n    source: public.%s\n    store: accounts\n", table))
	mono := testenv.Conn(t, "monolith")
	d := startProc(t, e.env)
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = 'changed' WHERE id <= 10`, schema.QuoteIdent(table)))
	waitEqual(t, d, "before replay", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	d.cmd.Process.Signal(sigterm)
	d.cmd.Wait()

	// Deleted while scoop is stopped: only the slot still carries these.
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id > 80`, schema.QuoteIdent(table)))
	if out, err := e.cli(t, "replay", "only", "--snapshot", "--wait", "0"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	d = startProc(t, e.env)
	waitReady(t, d)
	if logs := d.logs(); strings.Contains(logs, "created replication slot") || strings.Contains(logs, "dropping slot") {
		t.Fatalf("replay --snapshot recreated the slot:\n%s", tail(logs, 3000))
	}
	waitEqual(t, d, "after replay --snapshot", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
}
