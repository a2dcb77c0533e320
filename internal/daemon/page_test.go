package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/connectors/postgres"
)

// The chart's history keeps at most historyMax rounds of the last
// historyWindow.
func TestLagHistoryBounded(t *testing.T) {
	m := &monitor{cfg: &Config{HeartbeatInterval: time.Second}, stats: &postgres.SourceStats{}, sinks: map[string]*progress{}}
	t0 := time.Unix(1000, 0)
	for i := 0; i < 2*historyMax; i++ {
		m.record(t0.Add(time.Duration(i)*100*time.Millisecond), nil)
	}
	if n := len(m.lagHistory()); n != historyMax {
		t.Fatalf("%d samples kept, want %d", n, historyMax)
	}
	m.record(t0.Add(time.Hour), nil)
	if n := len(m.lagHistory()); n != 1 {
		t.Fatalf("%d samples kept after an hour, want 1", n)
	}
}

func TestLagChart(t *testing.T) {
	t0 := time.Unix(1000, 0)
	if got := string(lagChart(nil)); !strings.Contains(got, "collecting lag samples") {
		t.Fatalf("empty chart: %s", got)
	}
	hist := []lagSample{
		{at: t0, source: 0.1, mappings: map[string]float64{"a": 0.2, "<b>": 4}},
		{at: t0.Add(time.Minute), source: 0.3, mappings: map[string]float64{"a": 0.1}},
	}
	got := string(lagChart(hist))
	for _, want := range []string{`<svg id="lag-chart"`, `data-series="source"`, `data-series="a"`, `data-series="&lt;b&gt;"`, `>4.0s</text>`, `>-1m0s</text>`} {
		if !strings.Contains(got, want) {
			t.Errorf("chart lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "<b>") {
		t.Errorf("a mapping name is not escaped:\n%s", got)
	}
}
