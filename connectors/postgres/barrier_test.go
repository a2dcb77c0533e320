package postgres

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
)

// Concurrent instances completing one barrier truncate once; a failed
// truncate leaves the barrier to be completed again; done barriers tell a
// consumer which records they wiped.
func TestTruncateBarriers(t *testing.T) {
	testenv.Require(t)
	ctx := context.Background()
	b, err := NewTruncateBarriers(ctx, testenv.PGURL("monolith"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	id := pipeline.BarrierID{Group: testenv.Name("g"), Topic: "t", CommitLSN: 0x200, LSN: 0x100, Partitions: 3}

	st, err := b.Arrive(ctx, id, 0, 10)
	if err != nil || st != (pipeline.BarrierState{Arrived: 1}) {
		t.Fatalf("first arrival: %+v, %v", st, err)
	}
	if st, _ = b.Arrive(ctx, id, 0, 10); st.Arrived != 1 {
		t.Fatalf("an arrival counted twice: %+v", st)
	}
	b.Arrive(ctx, id, 1, 20)
	var truncates atomic.Int32
	truncate := func(context.Context) error { truncates.Add(1); return nil }
	if st, err = b.Complete(ctx, id, truncate); err != nil || st.Done || truncates.Load() != 0 {
		t.Fatalf("completed with 2 of 3 partitions: %+v, %v, %d truncates", st, err, truncates.Load())
	}
	b.Arrive(ctx, id, 2, 30)

	_, err = b.Complete(ctx, id, func(context.Context) error { return errors.New("store down") })
	if err == nil || !strings.Contains(err.Error(), "truncate barrier "+id.String()+": complete: store down") {
		t.Fatalf("failed truncate: got %v", err)
	}
	if st, _ = b.State(ctx, id); st.Done || st.Arrived != 3 {
		t.Fatalf("after a failed truncate: %+v", st)
	}

	// Instances, each with its connections; a store's truncate takes time.
	slowTruncate := func(ctx context.Context) error {
		time.Sleep(100 * time.Millisecond)
		return truncate(ctx)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		inst, err := NewTruncateBarriers(ctx, testenv.PGURL("monolith"))
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := inst.Complete(ctx, id, slowTruncate)
			if err != nil || !st.Done {
				t.Errorf("complete: %+v, %v", st, err)
			}
		}()
	}
	wg.Wait()
	if n := truncates.Load(); n != 1 {
		t.Fatalf("%d truncates by 8 concurrent instances, want 1", n)
	}
	if st, _ = b.Arrive(ctx, id, 1, 20); !st.Done {
		t.Fatalf("arrival at a done barrier: %+v", st)
	}

	tr, err := b.Truncated(ctx, id.Group, "t")
	if err != nil {
		t.Fatal(err)
	}
	if tr.CommitLSN != 0x200 || tr.LSN != 0x100 || tr.Offsets[0] != 10 || tr.Offsets[1] != 20 || tr.Offsets[2] != 30 {
		t.Fatalf("truncated: %+v", tr)
	}
	if tr, _ = b.Truncated(ctx, id.Group, "other"); tr.CommitLSN != 0 || len(tr.Offsets) != 0 {
		t.Fatalf("another topic sees the barrier: %+v", tr)
	}
}

func TestTruncateBarriersBadURL(t *testing.T) {
	_, err := NewTruncateBarriers(context.Background(), "postgres://%zz")
	if err == nil || !strings.HasPrefix(err.Error(), "parse PostgreSQL URL") {
		t.Fatalf("got %v", err)
	}
}
