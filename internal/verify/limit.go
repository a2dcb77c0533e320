package verify

import (
	"context"
	"sync"
	"time"
)

// limiter counts the rows read and, with a rate, paces the reads so that
// verify can run next to production.
type limiter struct {
	rate    float64
	mu      sync.Mutex
	start   time.Time
	counted int64
}

func newLimiter(perSecond int) *limiter {
	return &limiter{rate: float64(perSecond), start: time.Now()}
}

// take records n rows read and waits until the rate allows them.
func (l *limiter) take(ctx context.Context, n int) error {
	l.mu.Lock()
	l.counted += int64(n)
	var wait time.Duration
	if l.rate > 0 {
		due := l.start.Add(time.Duration(float64(l.counted) / l.rate * float64(time.Second)))
		wait = time.Until(due)
	}
	l.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (l *limiter) total() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counted
}
