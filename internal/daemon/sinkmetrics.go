package daemon

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/pipeline"
)

// Kinds of sink errors (scoop_sink_errors_total{kind}): what an operator
// does about each differs (docs/operations.md).
const (
	errStoreUnavailable = "store_unavailable" // a transient failure of the store: retried, the mapping pauses
	errConflictRetry    = "conflict_retry"    // a race with another writer of the rows (deadlock, conflict guard): retried
	errSchemaMismatch   = "schema_mismatch"   // the target cannot take the source's columns: waits for an operator
	errDeadLetter       = "dead_letter"       // an event that can never be applied, sent to the dead-letter topic
)

// sinkMetrics are the metrics of one flow's apply stage that its counters
// (kafka.ConsumerStats) do not carry: the latency of each batch the store
// took, and failures by kind.
type sinkMetrics struct {
	batch            prometheus.Histogram
	storeUnavailable atomic.Uint64
	conflictRetry    atomic.Uint64
	schemaMismatch   atomic.Uint64
}

// batchBuckets span a one-row batch on a local store (a millisecond) to a
// large batch on a slow one.
var batchBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// newSinkMetrics builds the flow's metrics; collectors returns them for
// registration (dead letters are read from st).
func newSinkMetrics(name string, st *kafka.ConsumerStats) (*sinkMetrics, []prometheus.Collector) {
	m := &sinkMetrics{batch: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "scoop_sink_batch_seconds", Help: "Time the store took to apply one batch (successful attempts; failures count in scoop_sink_errors_total).",
		ConstLabels: prometheus.Labels{"mapping": name}, Buckets: batchBuckets})}
	cs := []prometheus.Collector{m.batch}
	for kind, f := range map[string]func() uint64{
		errStoreUnavailable: m.storeUnavailable.Load,
		errConflictRetry:    m.conflictRetry.Load,
		errSchemaMismatch:   m.schemaMismatch.Load,
		errDeadLetter:       st.DeadLetters.Load,
	} {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scoop_sink_errors_total",
			Help:        "Failures of the apply stage by kind: store_unavailable and conflict_retry per failed attempt (retried), schema_mismatch per stop for an operator, dead_letter per event sent to the dead-letter topic.",
			ConstLabels: prometheus.Labels{"mapping": name, "kind": kind}}, func() float64 { return float64(f()) }))
	}
	return m, cs
}

// measured is a sink whose applications are timed and whose failures are
// counted by kind.
type measured struct {
	pipeline.Sink
	m *sinkMetrics
}

func (s measured) Apply(ctx context.Context, batch []pipeline.Change) error {
	start := time.Now()
	err := s.Sink.Apply(ctx, batch)
	switch {
	case err == nil:
		s.m.batch.Observe(time.Since(start).Seconds())
	case ctx.Err() != nil:
		// Stopping, not failing.
	case pipeline.IsPermanent(err), errors.Is(err, pipeline.ErrSchemaChanged), errors.Is(err, pipeline.ErrSchemaMismatch):
		// Counted where they end: as dead letters, a rebuild, or a stop
		// for the operator (runMapping).
	case postgres.IsConflictRetry(err):
		s.m.conflictRetry.Add(1)
	default:
		s.m.storeUnavailable.Add(1)
	}
	return err
}

// instrument wraps a flow's sink with its metrics (the flow's name:
// the mapping's, or <mapping>:reverse).
func (a *admin) instrument(name string, sink pipeline.Sink) pipeline.Sink {
	return measured{Sink: sink, m: a.sinkMetrics(name)}
}
