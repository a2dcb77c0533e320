package main

import (
	"bytes"
	"testing"
	"time"
)

// TestProgressText: the bar on a terminal, the plain line elsewhere, and a
// total that is not known.
func TestProgressText(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		bar         bool
		want        string
	}{
		{500, 1000, true, "replay r [##########          ]  50% 500/1000 events applied (100/s, ETA 5s)"},
		{500, 1000, false, "replay r: 500/1000 events applied (50%, 100/s, ETA 5s)"},
		{1000, 1000, true, "replay r [####################] 100% 1000/1000 events applied (200/s, ETA 0s)"},
		{0, 1000, false, "replay r: 0/1000 events applied (0%, 0/s, ETA ?)"},
		{700, 0, false, "replay r: 700 events applied (140/s)"},
	} {
		if got := progressText("replay r", c.done, c.total, "events applied", 5*time.Second, c.bar); got != c.want {
			t.Errorf("progressText(%d, %d, bar %v):\n got %q\nwant %q", c.done, c.total, c.bar, got, c.want)
		}
	}
}

// TestProgressLinesThrottled: off a terminal, a line is printed at most
// every period, and the last one whenever the operation is done.
func TestProgressLinesThrottled(t *testing.T) {
	var out bytes.Buffer
	p := &progress{w: &out, every: time.Hour, started: time.Now()}
	p.show("replay r", 1, 10, "events applied")
	p.show("replay r", 2, 10, "events applied")
	p.show("replay r", 10, 10, "events applied")
	p.note("replay r: caught up")
	lines := bytes.Count(out.Bytes(), []byte("\n"))
	if lines != 3 || !bytes.Contains(out.Bytes(), []byte("replay r: 1/10 ")) || bytes.Contains(out.Bytes(), []byte("replay r: 2/10 ")) ||
		!bytes.Contains(out.Bytes(), []byte("replay r: 10/10 ")) || bytes.Contains(out.Bytes(), []byte("\r")) {
		t.Errorf("progress off a terminal:\n%s", out.String())
	}
}
