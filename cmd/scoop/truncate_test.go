package main

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// TestTruncateReloadOrdered: `BEGIN; TRUNCATE; INSERT ...; COMMIT` reloads,
// repeated under concurrent writes to the same table from another
// connection, on a topic of 3 partitions: the rows loaded after each
// truncate survive and the rows before it are gone, in PostgreSQL and in
// Cassandra.
func TestTruncateReloadOrdered(t *testing.T) { truncateReloads(t, 1) }

// TestTruncateReloadOrderedTwoInstances: the same with the sinks of each
// mapping spread over two scoop instances sharing the consumer groups.
func TestTruncateReloadOrderedTwoInstances(t *testing.T) { truncateReloads(t, 2) }

func truncateReloads(t *testing.T, instances int) {
	mono := testenv.Conn(t, "monolith")
	table := testenv.Name("reload")
	q := schema.QuoteIdent(table)
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text)`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'initial' FROM generate_series(1, 500) g`, q))
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: reload-pg\n    source: public.%[1]s\n    store: accounts\n  - name: reload-cass\n    source: public.%[1]s\n    store: orders\n", table))
	e.env = append(e.env, "SCOOP_TOPIC_PARTITIONS=3")
	var procs []*proc
	for i := 0; i < instances; i++ {
		// SCOOP_ADMIN_ADDR=127.0.0.1:0: each instance its own admin port.
		procs = append(procs, startProc(t, e.env))
	}
	d := procs[0]

	// Each round: a writer upserts and deletes rows while the table is
	// reloaded twice; then both stores must equal the monolith. Only the
	// last reload of a round decides its end state, so rounds multiply the
	// chances that a misordered truncate shows.
	rnd := rand.New(rand.NewSource(1))
	reload := 0
	for round := 1; round <= 3; round++ {
		w := backgroundWriter(t, 0, func(ctx context.Context, c *pgx.Conn, n int) error {
			if _, err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO %s VALUES ($1, $2, 'writer') ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, note = 'writer'`, q), 1+rnd.Intn(800), n); err != nil {
				return err
			}
			if n%5 != 0 {
				return nil
			}
			_, err := c.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, q), 1+rnd.Intn(800))
			return err
		})
		for i := 0; i < 2; i++ {
			reload++
			// Pace the reloads so that the writer's changes fall between them.
			time.Sleep(700 * time.Millisecond)
			testenv.Exec(t, mono, fmt.Sprintf(`BEGIN; TRUNCATE %[1]s; INSERT INTO %[1]s SELECT g, g + %[2]d, 'reload %[2]d' FROM generate_series(1, 600) g; COMMIT`, q, reload))
		}
		time.Sleep(300 * time.Millisecond)
		w.stop()
		what := fmt.Sprintf("round %d", round)
		waitEqual(t, d, what+" -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
		waitEqual(t, d, what+" -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))
	}
	// Each instance consumed partitions of the groups and waited at markers.
	for i, p := range procs {
		n := strings.Count(p.logs(), "truncate marker reached")
		t.Logf("instance %d held %d partitions at a truncate marker", i+1, n)
		if n == 0 {
			t.Errorf("instance %d never held a partition at a truncate marker:\n%s", i+1, tail(p.logs(), 3000))
		}
	}
}
