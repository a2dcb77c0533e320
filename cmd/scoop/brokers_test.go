package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// TestKafkaBrokerFailure runs scoop against the three-node Kafka
// (replication factor 3, min.insync.replicas=2) under a steady write load:
//   - the leader of the topic's partition is SIGKILLed: rows keep arriving in
//     the store, and the node comes back; then the same for the active
//     controller of the KRaft quorum;
//   - both followers are SIGKILLed (no quorum, one replica left): acks=all
//     cannot be met, so the slot is never confirmed past the WAL position
//     at the moment they died (the rows exist on the leader alone, which a
//     later election may discard); once they return, everything arrives.
//
// The store is finally compared with the monolith: nothing lost.
func TestKafkaBrokerFailure(t *testing.T) {
	k := testenv.StartKafka3(t)
	table := createTable(t, 20)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: brokers\n    source: public.%s\n    store: accounts\n", table))
	env := slices.DeleteFunc(slices.Clone(e.env), func(v string) bool { return strings.HasPrefix(v, "SCOOP_KAFKA_BROKERS=") })
	// One partition: its leader and followers are the nodes the test kills.
	env = append(env, "SCOOP_KAFKA_BROKERS="+strings.Join(k.Brokers(), ","),
		"SCOOP_TOPIC_REPLICATION_FACTOR=3", "SCOOP_TOPIC_PARTITIONS=1")
	topic := e.prefix + ".public." + table
	p := startProc(t, env)
	waitLog(t, p, "msg=streaming", 60*time.Second)

	mono := testenv.Conn(t, "monolith")
	q := schema.QuoteIdent(table)
	written := backgroundWriter(t, 10*time.Millisecond, func(ctx context.Context, c *pgx.Conn, i int) error {
		_, err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO %s VALUES ($1::int, $1::int, 'b', 's')`, q), 1000+i)
		return err
	})

	stored := func() int {
		var n int
		c, err := pgx.Connect(context.Background(), testenv.PGURL("service"))
		if err != nil {
			return -1
		}
		defer c.Close(context.Background())
		if c.QueryRow(context.Background(), fmt.Sprintf(`SELECT count(*) FROM %s`, q)).Scan(&n) != nil {
			return -1
		}
		return n
	}
	waitFor := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after %s (%d rows written, %d stored)\nscoop log tail:\n%s",
					what, d, written.steps.Load(), stored(), tail(p.logs(), 3000))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	leader := func() (int, []int) {
		t.Helper()
		var l int
		var isr []int
		waitFor("the partition has a leader", 60*time.Second, func() bool {
			c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			l, isr, err = k.Leader(c, topic)
			return err == nil && l > 0
		})
		return l, isr
	}
	waitFor("rows flow through the three-node Kafka", 60*time.Second, func() bool { return stored() >= 100 })

	// One node down: the partition's leader.
	l, isr := leader()
	t.Logf("killing the leader, node %d (in sync: %v)", l, isr)
	start, atKill := time.Now(), stored()
	k.Kill(t, l)
	waitFor("rows arrive with the leader down", 120*time.Second, func() bool { return stored() >= atKill+200 })
	t.Logf("200 rows arrived %s after the leader's SIGKILL", time.Since(start).Round(100*time.Millisecond))
	k.Up(t, l)
	waitFor("all three replicas in sync again", 120*time.Second, func() bool { _, isr := leader(); return len(isr) == 3 })

	// One node down: the active controller (the quorum elects another).
	var ctrl int
	waitFor("the controller quorum has a leader", 60*time.Second, func() bool {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		ctrl, err = k.ActiveController(c)
		return err == nil && ctrl > 0
	})
	l, _ = leader()
	t.Logf("killing the active controller, node %d (partition leader: node %d)", ctrl, l)
	start, atKill = time.Now(), stored()
	k.Kill(t, ctrl)
	waitFor("rows arrive with the controller down", 120*time.Second, func() bool { return stored() >= atKill+200 })
	t.Logf("200 rows arrived %s after the controller's SIGKILL", time.Since(start).Round(100*time.Millisecond))
	k.Up(t, ctrl)
	waitFor("all three replicas in sync again", 120*time.Second, func() bool { _, isr := leader(); return len(isr) == 3 })

	// Two nodes down: only the leader is left, below min.insync.replicas.
	l, _ = leader()
	var followers []int
	for i := 1; i <= 3; i++ {
		if i != l {
			followers = append(followers, i)
		}
	}
	t.Logf("killing both followers %v of leader %d", followers, l)
	k.Kill(t, followers...)
	var killedAt string
	if err := mono.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&killedAt); err != nil {
		t.Fatal(err)
	}
	before := written.steps.Load()
	watch := time.Now()
	// Ten seconds of writes with no way to meet acks=all: the slot must
	// stay at or before killedAt the whole time.
	for time.Since(watch) < 10*time.Second || written.steps.Load() < before+100 {
		var past bool
		var confirmed string
		if err := mono.QueryRow(context.Background(), `SELECT confirmed_flush_lsn > $2::pg_lsn, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`,
			e.slot, killedAt).Scan(&past, &confirmed); err != nil {
			t.Fatalf("read the slot: %v", err)
		}
		if past {
			t.Fatalf("with 2 of 3 brokers down the slot was confirmed to %s, past %s where they died: rows only one replica holds were acknowledged\nscoop log tail:\n%s",
				confirmed, killedAt, tail(p.logs(), 3000))
		}
		if time.Since(watch) > 60*time.Second {
			t.Fatalf("the monolith took no writes: %d rows in 60 s", written.steps.Load()-before)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("slot held at or before %s for %s while %d rows were written", killedAt, time.Since(watch).Round(100*time.Millisecond), written.steps.Load()-before)
	k.Up(t, followers...)
	atReturn := written.steps.Load()
	waitFor("rows written after the brokers returned arrive", 120*time.Second, func() bool { return int64(stored()) >= atReturn+20 })
	written.stop()
	waitEqual(t, p, "after two broker failures", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	t.Logf("%d rows written across the broker failures, all in the store", written.steps.Load())
}
