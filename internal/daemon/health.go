package daemon

import (
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/scoop-cdc/scoop/pipeline"
)

// healthz answers 200 while the daemon's loops tick (a liveness probe: a
// failure means restart the process), 503 naming the stuck loops.
func (a *admin) healthz(w http.ResponseWriter, r *http.Request) {
	if stuck := a.mon.stuckLoops(time.Now(), a.mon.healthLimit()); len(stuck) > 0 {
		http.Error(w, "unhealthy: "+strings.Join(stuck, "; "), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok\n"))
}

// readyz answers 200 when the pipeline can do its work (a readiness probe:
// a failure means look, not restart), else 503 with one reason a line.
func (a *admin) readyz(w http.ResponseWriter, r *http.Request) {
	if p := a.notReady(); len(p) > 0 {
		http.Error(w, "not ready:\n"+strings.Join(p, "\n"), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

// notReady lists why the daemon is not ready (none: ready).
func (a *admin) notReady() []string {
	if !a.ready.Load() {
		return []string{"the mapping registry has not been read yet"}
	}
	return a.mon.problems()
}

// watched lists the running mappings with their counters, for the monitor.
func (a *admin) watched() []watched {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []watched
	for _, m := range a.active {
		if st := a.mappings[m.Name]; st != nil {
			out = append(out, watched{Mapping: m, stats: st})
		}
		if m.Direction != pipeline.DirectionBoth {
			continue
		}
		if st := a.mappings[m.Name+reverseSuffix]; st != nil {
			out = append(out, watched{Mapping: m, stats: st, reverse: true})
		}
	}
	return out
}

// sourceStatus is the slot as the monitor last read it, LSNs in
// PostgreSQL's X/Y form.
func (a *admin) sourceStatus() map[string]any {
	o, res, ran := a.mon.view()
	out := map[string]any{
		"received_lsn":    lsnText(a.stats.ReceivedLSN.Load()),
		"acked_lsn":       lsnText(a.acked()),
		"lag_seconds":     round(a.mon.sourceLag(time.Now())),
		"max_retained_mb": a.cfg.MaxRetainedWALMB,
	}
	if !ran {
		return out
	}
	out["checked_at"] = o.now.UTC().Format(time.RFC3339)
	out["stalled"] = res.sourceStalled
	out["wal_warning"] = res.walWarning
	if o.kafkaErr != nil {
		out["kafka_error"] = o.kafkaErr.Error()
	}
	if o.slotErr != nil {
		out["error"] = o.slotErr.Error()
		return out
	}
	out["slot_exists"] = o.slot.Exists
	out["active"] = o.slot.Active
	out["current_lsn"] = lsnText(o.slot.CurrentLSN)
	out["restart_lsn"] = lsnText(o.slot.RestartLSN)
	out["confirmed_lsn"] = lsnText(o.slot.ConfirmedLSN)
	out["wal_status"] = o.slot.WALStatus
	out["retained_wal_mb"] = round(mb(o.slot.RetainedWAL()))
	return out
}

// lagEvents is a mapping's consumer lag at the last check (-1: unknown).
func (m *monitor) lagEvents(name string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.obs.lag[name]; ok {
		return n
	}
	return -1
}

// addMappingStatus adds the monitor's view of one mapping to its /status
// entry: state, its reason, lag in seconds and in events.
func (m *monitor) addMappingStatus(ms map[string]any, w watched) {
	name := w.name()
	m.mu.Lock()
	v, ok := m.result.mappings[name]
	m.mu.Unlock()
	if !ok {
		v = mappingView{State: "starting", LagEvents: -1}
	}
	now := time.Now()
	ms["state"] = v.State
	if v.Reason != "" && v.State != "streaming" && v.State != "snapshotting" {
		ms["reason"] = v.Reason
	}
	ms["lag_events"] = v.LagEvents
	ms["lag_seconds"] = round(m.mappingLag(name, w.stats, v.LagEvents, now))
	ms["throughput"] = round(m.rates.rate(name))
	if p := v.Snapshot; p != nil {
		snap := map[string]any{"rows": p.Rows, "estimated_rows": p.Estimate}
		if f := p.Fraction(); f >= 0 {
			snap["percent"] = math.Floor(f * 100)
		}
		if eta := p.ETA(now); eta >= 0 {
			snap["eta_seconds"] = math.Ceil(eta.Seconds())
		}
		ms["snapshot"] = snap
	}
}

func round(f float64) float64 { return math.Round(f*10) / 10 }
