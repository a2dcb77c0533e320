package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress shows how far a long operation of the CLI (a replay, a copy)
// went: a bar redrawn in place on a terminal, otherwise a plain line at
// most every `every` (and whenever the operation finishes), so that logs
// of scripts stay short.
type progress struct {
	w       io.Writer
	bar     bool
	every   time.Duration
	started time.Time
	printed time.Time
	last    string
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, bar: isTerminal(w), every: 5 * time.Second, started: time.Now()}
}

// show reports done of total (total <= 0: unknown) with what it counts.
func (p *progress) show(prefix string, done, total int64, unit string) {
	now := time.Now()
	line := progressText(prefix, done, total, unit, now.Sub(p.started), p.bar)
	if p.bar {
		fmt.Fprint(p.w, "\r\033[K"+line)
		return
	}
	if line == p.last || (!p.printed.IsZero() && now.Sub(p.printed) < p.every && done < total) {
		return
	}
	fmt.Fprintln(p.w, line)
	p.last, p.printed = line, now
}

// note prints a line of its own (after clearing the bar).
func (p *progress) note(format string, args ...any) {
	p.clear()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// progressText is "prefix [#####     ] 50% 500/1000 events (120/s, ETA 4s)"
// with a bar, "prefix: 500/1000 events (50%, 120/s, ETA 4s)" without.
func progressText(prefix string, done, total int64, unit string, elapsed time.Duration, bar bool) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	if total <= 0 {
		return fmt.Sprintf("%s: %d %s (%.0f/s)", prefix, done, unit, rate)
	}
	f := min(float64(done)/float64(total), 1)
	eta := "ETA ?"
	if rate > 0 {
		eta = "ETA " + (time.Duration(float64(total-min(done, total))/rate) * time.Second).Round(time.Second).String()
	}
	if !bar {
		return fmt.Sprintf("%s: %d/%d %s (%.0f%%, %.0f/s, %s)", prefix, done, total, unit, f*100, rate, eta)
	}
	const width = 20
	full := int(f * width)
	return fmt.Sprintf("%s [%s%s] %3.0f%% %d/%d %s (%.0f/s, %s)", prefix, strings.Repeat("#", full), strings.Repeat(" ", width-full), f*100, done, total, unit, rate, eta)
}

// clear removes the bar (before an error is printed).
func (p *progress) clear() {
	if p.bar {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
