package daemon

import (
	"sync"
	"time"
)

// throughput keeps each flow's applied count over the monitor's recent
// rounds and answers its rate in changes per second.
type throughput struct {
	mu      sync.Mutex
	samples map[string][]appliedSample
}

type appliedSample struct {
	at      time.Time
	applied uint64
}

// rateWindow is how far back a rate looks: about ten seconds, and at least
// three monitor rounds.
func rateWindow(interval time.Duration) time.Duration { return max(10*time.Second, 3*interval) }

// observe records each flow's applied count at now and forgets flows that
// are gone.
func (t *throughput) observe(now time.Time, ws []watched, interval time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.samples == nil {
		t.samples = map[string][]appliedSample{}
	}
	window := rateWindow(interval)
	seen := map[string]bool{}
	for _, w := range ws {
		name := w.name()
		seen[name] = true
		s := append(t.samples[name], appliedSample{now, w.stats.Applied.Load()})
		// Keep one sample at or beyond the window's start.
		drop := 0
		for drop+1 < len(s) && now.Sub(s[drop+1].at) >= window {
			drop++
		}
		t.samples[name] = append(s[:0], s[drop:]...)
	}
	for name := range t.samples {
		if !seen[name] {
			delete(t.samples, name)
		}
	}
}

// rate is a flow's changes per second between its oldest and newest
// sample (0 before two samples).
func (t *throughput) rate(name string) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.samples[name]
	if len(s) < 2 {
		return 0
	}
	first, last := s[0], s[len(s)-1]
	secs := last.at.Sub(first.at).Seconds()
	if secs <= 0 || last.applied < first.applied {
		return 0
	}
	return float64(last.applied-first.applied) / secs
}
