package pipeline

import (
	"context"
	"time"
)

// Backoff is an exponential wait between attempts: Min, then doubled after
// each attempt up to Max. The zero value waits 100ms to 30s. It has no
// jitter: each mapping and the source retry on their own, so attempts do not
// pile up on a store at the same instant.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// Next returns the wait before the coming attempt and doubles the one after.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	if b.next < lo {
		b.next = lo
	}
	d := min(b.next, hi)
	b.next = min(d*2, hi)
	return d
}

// Reset starts again from Min (the last attempt succeeded, or ran well for
// a while).
func (b *Backoff) Reset() { b.next = 0 }

// Sleep waits d, or less if ctx ends first (then it returns ctx.Err()).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
