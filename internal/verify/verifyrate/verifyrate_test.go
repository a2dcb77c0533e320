package verifyrate

import (
	"testing"
	"time"
)

// heapRun is n samples 25 ms apart from start, the live heap of each from
// mb (in use: twice that).
func heapRun(start time.Time, n int, mb func(i int) float64) []sample {
	out := make([]sample, n)
	for i := range out {
		out[i] = sample{at: start.Add(time.Duration(i) * SampleEvery), heap: 2 * uint64(mb(i)*(1<<20)), live: uint64(mb(i) * (1 << 20))}
	}
	return out
}

func TestJudgeFlat(t *testing.T) {
	start := time.Now()
	end := start.Add(40 * SampleEvery)
	for _, c := range []struct {
		name string
		n    int
		mb   func(i int) float64
		want string // flat, growing, unjudged
	}{
		// The live heap moving around a steady value.
		{"sawtooth", 40, func(i int) float64 { return 8 + float64(i%5) }, "flat"},
		// A few MB of noise on a small heap.
		{"small noise", 40, func(i int) float64 { return 3 + float64(i/20)*1.5 }, "flat"},
		// Memory that grows with the rows compared.
		{"growing", 40, func(i int) float64 { return 4 + float64(i) }, "growing"},
		// Too short a run to tell.
		{"short", 10, func(i int) float64 { return 4 + float64(i*10) }, "unjudged"},
	} {
		var res Result
		res.judge(heapRun(start, c.n, c.mb), start, end)
		got := "unjudged"
		if res.Flat != nil {
			got = map[bool]string{true: "flat", false: "growing"}[*res.Flat]
		}
		if got != c.want {
			t.Errorf("%s: %s, want %s (halves %.1f / %.1f MB, %d samples)", c.name, got, c.want, res.LiveFirstHalfMB, res.LiveSecondHalfMB, res.Samples)
		}
	}
}
