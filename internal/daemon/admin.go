package daemon

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/registry"
)

// admin serves /healthz, /readyz, /metrics and /status.
type admin struct {
	cfg      *Config
	stats    *postgres.SourceStats
	acked    func() uint64
	listener net.Listener
	registry *prometheus.Registry
	ready    atomic.Bool
	mon      *monitor

	mu       sync.Mutex
	mappings map[string]*kafka.ConsumerStats
	metrics  map[string]*sinkMetrics // by flow name, as mappings
	active   []registry.Mapping
}

func (a *admin) setMappings(ms []registry.Mapping) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.active = ms
}

// mappingStats returns the counters of one mapping's sink, registering its
// metrics the first time the name is seen.
func (a *admin) mappingStats(name string) *kafka.ConsumerStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st, ok := a.mappings[name]; ok {
		return st
	}
	st := &kafka.ConsumerStats{}
	a.mappings[name] = st
	labels := prometheus.Labels{"mapping": name}
	sm, collectors := newSinkMetrics(name, st)
	a.metrics[name] = sm
	a.registry.MustRegister(collectors...)
	a.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scoop_sink_applied_total", Help: "Changes applied to the store.", ConstLabels: labels},
			func() float64 { return float64(st.Applied.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scoop_sink_dead_letters_total", Help: "Events sent to the dead-letter topic.", ConstLabels: labels},
			func() float64 { return float64(st.DeadLetters.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scoop_sink_retries_total", Help: "Failed store writes retried.", ConstLabels: labels},
			func() float64 { return float64(st.Retries.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scoop_sink_echoes_skipped_total", Help: "Events skipped because this mapping's other flow wrote them from this store (direction both).", ConstLabels: labels},
			func() float64 { return float64(st.Echoes.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scoop_sink_paused", Help: "1 while the store is failing and the mapping waits.", ConstLabels: labels},
			func() float64 {
				if st.Paused.Load() {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scoop_sink_schema_mismatch", Help: "1 while the target table cannot take the source's columns and the mapping waits for an operator (see last_error in /status).", ConstLabels: labels},
			func() float64 {
				if st.SchemaMismatch.Load() {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scoop_sink_schema_changes_total", Help: "Sink rebuilds after the source table's columns changed.", ConstLabels: labels},
			func() float64 { return float64(st.SchemaChanges.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scoop_sink_lag_seconds", Help: "End-to-end lag: the source's lag while the mapping's topic is drained, else the delay of its last applied change plus the time events waited without progress.", ConstLabels: labels},
			func() float64 { return a.mon.mappingLag(name, st, a.mon.lagEvents(name), time.Now()) }),
	)
	return st
}

// sinkMetrics returns the latency and error metrics of one flow's sink,
// registering its metrics the first time the name is seen.
func (a *admin) sinkMetrics(name string) *sinkMetrics {
	a.mappingStats(name)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.metrics[name]
}

func newAdmin(cfg *Config, st *postgres.SourceStats, acked func() uint64) (*admin, error) {
	l, err := listen(cfg.AdminAddr)
	if err != nil {
		return nil, err
	}
	a := &admin{cfg: cfg, stats: st, acked: acked, listener: l, registry: prometheus.NewRegistry(), mappings: map[string]*kafka.ConsumerStats{}, metrics: map[string]*sinkMetrics{}}
	if a.mon, err = newMonitor(cfg, st, a.watched); err != nil {
		l.Close()
		return nil, err
	}
	a.registry.MustRegister(
		a.mon,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scoop_source_leader", Help: "1 while this instance leads the slot's source (holds its lease); 0 while it stands by."},
			func() float64 {
				if st.Leading.Load() {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scoop_source_events_total", Help: "Change events decoded from the slot."},
			func() float64 { return float64(st.Events.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scoop_source_snapshot_rows_total", Help: "Rows read by snapshots."},
			func() float64 { return float64(st.SnapshotRows.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scoop_source_received_lsn", Help: "Last WAL position received from the slot."},
			func() float64 { return float64(st.ReceivedLSN.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scoop_source_acked_lsn", Help: "WAL position confirmed to the slot (everything before it is in Kafka)."},
			func() float64 { return float64(acked()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scoop_source_retained_wal_bytes", Help: "WAL the slot holds back on the server (current position minus restart_lsn), read every SCOOP_MONITOR_INTERVAL."},
			func() float64 { return float64(st.RetainedWAL.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scoop_source_lag_seconds", Help: "How far the stream is behind the monolith: the delay of the newest commit or heartbeat received, plus the time a heartbeat is overdue (near zero while idle)."},
			func() float64 { return a.mon.sourceLag(time.Now()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scoop_source_lag_bytes", Help: "Received minus confirmed WAL position."},
			func() float64 {
				r, a := st.ReceivedLSN.Load(), acked()
				if r > a {
					return float64(r - a)
				}
				return 0
			}),
	)
	return a, nil
}

func (a *admin) serve(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /{$}", a.auth(a.page))
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	// Profiles for diagnosing a slow pipeline, when asked for (goroutine
	// dumps show what scoop is doing): behind the admin token.
	if a.cfg.AdminPprof {
		mux.HandleFunc("GET /debug/pprof/", a.auth(pprof.Index))
		mux.HandleFunc("GET /debug/pprof/profile", a.auth(pprof.Profile))
		mux.HandleFunc("GET /debug/pprof/heap", a.auth(pprof.Handler("heap").ServeHTTP))
	}
	mux.HandleFunc("GET /status", a.auth(func(w http.ResponseWriter, r *http.Request) {
		st := a.stats
		problems := append([]string{}, a.notReady()...)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"slot":           a.cfg.Slot,
			"publication":    a.cfg.Publication,
			"leader":         st.Leading.Load(),
			"events":         st.Events.Load(),
			"snapshot_rows":  st.SnapshotRows.Load(),
			"received_lsn":   st.ReceivedLSN.Load(),
			"acked_lsn":      a.acked(),
			"last_commit_ms": st.LastCommit.Load(),
			"retained_wal":   st.RetainedWAL.Load(),
			"mappings":       a.mappingStatus(),
			"ready":          len(problems) == 0,
			"problems":       problems,
			"source":         a.sourceStatus(),
		})
	}))
	return serveHTTP(ctx, a.listener, mux)
}

// auth requires the admin token (when one is set) as a bearer token.
func (a *admin) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.AdminToken != "" {
			want := "Bearer " + a.cfg.AdminToken
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
				http.Error(w, "unauthorized: send Authorization: Bearer $SCOOP_ADMIN_TOKEN", http.StatusUnauthorized)
				return
			}
		}
		h(w, r)
	}
}

// mappingStatus is one entry per running flow: each mapping's, and the
// reverse flow of a direction-both mapping as <mapping>:reverse (its source
// is <store>:<service table>, its store the monolith).
func (a *admin) mappingStatus() map[string]any {
	out := map[string]any{}
	for _, w := range a.watched() {
		st := w.stats
		ms := map[string]any{"source": w.from(), "store": w.target(), "generation": w.Generation,
			"applied": st.Applied.Load(), "dead_letters": st.DeadLetters.Load(), "retries": st.Retries.Load(), "paused": st.Paused.Load(),
			"schema_mismatch": st.SchemaMismatch.Load(), "schema_changes": st.SchemaChanges.Load()}
		if w.reverse {
			ms["flow"] = "reverse"
			ms["mapping"] = w.Name
		}
		if e := st.LastError.Load(); e != nil {
			ms["last_error"] = *e
		}
		a.mon.addMappingStatus(ms, w)
		out[w.name()] = ms
	}
	return out
}
