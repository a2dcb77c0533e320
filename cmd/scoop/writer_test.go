package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
)

// writer writes to the monolith in the background while a test does
// something to scoop.
type writer struct {
	steps atomic.Int64 // steps done
	stop  func()       // ends the writer and waits for it; idempotent
}

// backgroundWriter calls step(ctx, conn, i) for i = 0, 1, ... on a connection of
// its own, pause apart, until stopped (at the test's end at the latest).
// The first error fails the test and ends the writer.
func backgroundWriter(t *testing.T, pause time.Duration, step func(ctx context.Context, c *pgx.Conn, i int) error) *writer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w := &writer{}
	var once sync.Once
	w.stop = func() { once.Do(func() { cancel(); <-done }) }
	go func() {
		defer close(done)
		c, err := pgx.Connect(context.Background(), testenv.PGURL("monolith"))
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		for i := 0; ctx.Err() == nil; i++ {
			// A step is not cancelled half-way: it either commits or fails.
			if err := step(context.Background(), c, i); err != nil {
				t.Errorf("writer, step %d: %v", i, err)
				return
			}
			w.steps.Add(1)
			if pause > 0 {
				time.Sleep(pause)
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}
