package pipeline

import (
	"context"
	"sync"
)

// Budget bounds the bytes of records in flight between the source and the
// forwarder, so memory stays flat whatever the size of events: the source
// acquires a record's size before handing it over, the forwarder releases it
// once Kafka has it. A record larger than the whole budget passes alone.
type Budget struct {
	mu    sync.Mutex
	limit int64
	used  int64
	freed chan struct{} // closed and replaced on every release
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget {
	return &Budget{limit: limit, freed: make(chan struct{})}
}

// Acquire waits until n bytes fit.
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	if b == nil {
		return nil
	}
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.limit {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		wait := b.freed
		b.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Release returns n bytes.
func (b *Budget) Release(n int64) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// Size is what a record counts against a budget.
func (r *Record) Size() int64 { return int64(len(r.Key) + len(r.Value)) }
