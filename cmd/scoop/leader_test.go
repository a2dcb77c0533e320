package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
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

	ctx, stop := context.WithCancel(context.Background())
	var written atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		w, err := pgx.Connect(context.Background(), testenv.PGURL("monolith"))
		if err != nil {
			t.Error(err)
			return
		}
		defer w.Close(context.Background())
		for id := 1000; ctx.Err() == nil; id++ {
			if _, err := w.Exec(context.Background(), fmt.Sprintf(`INSERT INTO %s VALUES ($1, $2, 'lead')`, schema.QuoteIdent(table)), id, id); err != nil {
				t.Error(err)
				return
			}
			written.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()

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
	stop()
	<-done
	waitEqual(t, c, "after two takeovers", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	t.Logf("%d rows written across two takeovers, all in the store", written.Load())
}
