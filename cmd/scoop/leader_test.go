package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// waitLog waits until an instance's log holds want, for at most d, and
// returns how long that took.
func waitLog(t *testing.T, p *proc, want string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for !strings.Contains(p.logs(), want) {
		if time.Since(start) > d {
			t.Fatalf("no %q in the log after %s:\n%s", want, d, tail(p.logs(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// TestSourceLeadership: two instances on one slot; one streams, the other
// stands by and takes over within 10 s when the leader is SIGKILLed, and
// again when the new leader's lease session is terminated. Rows written all
// along reach the store.
func TestSourceLeadership(t *testing.T) {
	table := createTable(t, 20)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: lead\n    source: public.%s\n    store: accounts\n", table))
	a := startProc(t, e.env)
	waitLog(t, a, "msg=streaming", 30*time.Second)
	b := startProc(t, e.env)
	waitLog(t, b, `msg="source standby`, 30*time.Second)
	if strings.Contains(b.logs(), "msg=streaming") {
		t.Fatalf("the standby streams while the leader runs:\n%s", tail(b.logs(), 2000))
	}

	written := backgroundWriter(t, 5*time.Millisecond, func(ctx context.Context, c *pgx.Conn, i int) error {
		_, err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO %s VALUES ($1, $2, 'lead')`, schema.QuoteIdent(table)), 1000+i, 1000+i)
		return err
	})

	a.kill()
	took := waitLog(t, b, `msg="took over the source"`, 10*time.Second)
	t.Logf("standby took over %s after the leader's SIGKILL", took.Round(10*time.Millisecond))

	// A third instance stands by; the leader's lease session is terminated.
	c := startProc(t, e.env)
	waitLog(t, c, `msg="source standby`, 30*time.Second)
	mono := testenv.Conn(t, "monolith")
	var pid int
	if err := mono.QueryRow(context.Background(), `
		SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
		AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended('scoop source ' || $1, 0)`, e.slot).Scan(&pid); err != nil {
		t.Fatalf("find the lease session: %v", err)
	}
	testenv.Exec(t, mono, `SELECT pg_terminate_backend($1)`, pid)
	waitLog(t, b, "lost the source leadership", 10*time.Second)
	took = waitLog(t, c, `msg="took over the source"`, 10*time.Second)
	t.Logf("standby took over %s after the lease session was terminated", took.Round(10*time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	written.stop()
	waitEqual(t, c, "after two takeovers", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	t.Logf("%d rows written across two takeovers, all in the store", written.steps.Load())
}

// TestRollingRestart: three instances under a steady write load into both
// stores, restarted one by one (SIGTERM), then one SIGKILLed: nothing is
// lost and both stores converge to the monolith.
func TestRollingRestart(t *testing.T) {
	table := createTable(t, 50)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: roll-pg\n    source: public.%[1]s\n    store: accounts\n  - name: roll-cass\n    source: public.%[1]s\n    store: orders\n", table))
	var procs [3]*proc
	var all []*proc // every instance started, for the logs of a failure
	start := func() *proc {
		p := startProc(t, e.env)
		all = append(all, p)
		return p
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range all {
				t.Logf("instance %d log tail:\n%s", i, tail(p.logs(), 4000))
			}
			t.Logf("dead letters: %s", deadLetters(t, e.prefix+".dlq"))
		}
	})
	for i := range procs {
		procs[i] = start()
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(procs[0].logs()+procs[1].logs()+procs[2].logs(), "msg=streaming") {
		if time.Now().After(deadline) {
			t.Fatalf("no instance streams:\n%s", tail(procs[0].logs(), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}

	q := schema.QuoteIdent(table)
	written := backgroundWriter(t, 10*time.Millisecond, func(ctx context.Context, c *pgx.Conn, i int) error {
		id := 1000 + 3*i
		// Inserts, an update of an earlier row and a delete, in one transaction.
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'r' FROM generate_series($1::int, $1::int + 2) g`, q), id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET note = 'updated' WHERE id = $1`, q), id-30); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = $1`, q), id-61)
			return err
		})
	})
	for i := range procs {
		time.Sleep(2 * time.Second)
		procs[i].cmd.Process.Signal(syscall.SIGTERM)
		procs[i].cmd.Wait()
		procs[i] = start()
	}
	time.Sleep(2 * time.Second)
	procs[1].kill()
	time.Sleep(2 * time.Second)
	written.stop()
	waitEqual(t, procs[2], "rolling restart -> PostgreSQL", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	waitEqual(t, procs[2], "rolling restart -> Cassandra", pgOrders(t, "monolith", table), cassandraRows(t, e.keyspace, table))
	// Converged stores could still hide a change dead-lettered and then
	// overwritten by a later change of its key: none may go there.
	if dl := deadLetters(t, e.prefix+".dlq"); dl != "none" {
		t.Fatalf("changes of the mappings went to the dead-letter topic: %s", dl)
	}
}

// deadLetters describes every record of a dead-letter topic: its mapping,
// origin and reason ("none" when the topic is empty or missing).
func deadLetters(t *testing.T, topic string) string {
	msgs := testenv.ReadTopic(t, topic, 0, 0)
	if len(msgs) == 0 {
		return "none"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d", len(msgs))
	for _, m := range msgs {
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		fmt.Fprintf(&b, "\n  key %s mapping %s from %s/%s@%s: %s", m.Key, h["scoop.mapping"], h["scoop.original.topic"],
			h["scoop.original.partition"], h["scoop.original.offset"], h["scoop.error"])
	}
	return b.String()
}

// leads reads an instance's scoop_source_leader metric (-1 when its admin
// server does not answer).
func leads(addr string) int {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch {
	case strings.Contains(string(b), "\nscoop_source_leader 1"):
		return 1
	case strings.Contains(string(b), "\nscoop_source_leader 0"):
		return 0
	}
	return -1
}

// TestSourceTakeoverTimes: the leader of two instances is SIGKILLed ten
// times; the metrics say who leads, and the standby takes over each time
// well within 10 s. The note reports the median and worst.
func TestSourceTakeoverTimes(t *testing.T) {
	table := createTable(t, 10)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: takeover\n    source: public.%s\n    store: accounts\n", table))
	addrs := [2]string{freeAddr(t), freeAddr(t)}
	start := func(i int) *proc {
		env := append([]string{}, e.env...)
		return startProc(t, append(env, "SCOOP_ADMIN_ADDR="+addrs[i]))
	}
	procs := [2]*proc{start(0), start(1)}
	waitRoles := func() int { // the index of the leader, once the other stands by
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			a, b := leads(addrs[0]), leads(addrs[1])
			if a == 1 && b == 0 {
				return 0
			}
			if a == 0 && b == 1 {
				return 1
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("no leader and standby among the instances:\n%s", tail(procs[0].logs()+procs[1].logs(), 3000))
		return -1
	}
	var took []time.Duration
	for round := 0; round < 10; round++ {
		leader := waitRoles()
		other := 1 - leader
		killed := time.Now()
		procs[leader].kill()
		for leads(addrs[other]) != 1 {
			if time.Since(killed) > 10*time.Second {
				t.Fatalf("round %d: no takeover within 10 s:\n%s", round, tail(procs[other].logs(), 3000))
			}
			time.Sleep(20 * time.Millisecond)
		}
		took = append(took, time.Since(killed))
		procs[leader] = start(leader)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("takeover after SIGKILL of the leader, 10 kills: median %s, worst %s", took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}
