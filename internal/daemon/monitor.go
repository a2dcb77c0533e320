package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/registry"
	"github.com/scoop-cdc/scoop/pipeline"
)

// The monitor looks at the pipeline from outside on its own timer
// (SCOOP_MONITOR_INTERVAL): the slot's state on the server, Kafka, each
// store's address, each mapping's consumer lag, and progress over time. It
// decides readiness (/readyz), the states shown by `scoop status`, and the
// gauges that go with them. /healthz asks whether the daemon's loops
// (reconcile and monitor) still tick.

// watched is one running flow of a mapping with its counters: its forward
// flow (topic into store) or, for direction both, its reverse flow (the
// reverse topic into the monolith, named <mapping>:reverse).
type watched struct {
	registry.Mapping
	stats   *kafka.ConsumerStats
	reverse bool
}

// name is the flow's name in status and metrics.
func (w watched) name() string {
	if w.reverse {
		return w.Name + reverseSuffix
	}
	return w.Name
}

const reverseSuffix = ":reverse"

// group and topic are what the flow consumes.
func (w watched) group(prefix string) string {
	if w.reverse {
		return w.GroupID(prefix) + ".reverse"
	}
	return w.GroupID(prefix)
}

func (w watched) topic(prefix string) string {
	if w.reverse {
		return pipeline.ReverseTopic(prefix, &w.Mapping.Mapping)
	}
	return w.TopicName(prefix)
}

// target is where the flow writes: the mapping's store, or the monolith.
func (w watched) target() string {
	if w.reverse {
		return "monolith"
	}
	return w.Store
}

// from is what the flow reads: the monolith table, or the service's.
func (w watched) from() string {
	if w.reverse {
		return w.Store + ":" + w.TargetTable()
	}
	return w.Source
}

// progress remembers when a position last moved while work was pending.
type progress struct {
	value uint64
	since time.Time
}

// update records value at now; it returns for how long value has not moved
// while pending (0 when not pending or it just moved).
func (p *progress) update(value uint64, pending bool, now time.Time) time.Duration {
	if !pending || value != p.value || p.since.IsZero() {
		p.value, p.since = value, now
		return 0
	}
	return now.Sub(p.since)
}

// mappingView is one mapping as the monitor last saw it.
type mappingView struct {
	State     string // streaming, snapshotting, paused, failing, stalled
	Reason    string
	LagEvents int64 // -1: unknown
	// Snapshot is the table's snapshot progress while snapshotting, when
	// this instance's source reads it (nil on a standby).
	Snapshot *postgres.TableProgress
}

// observation is what one round of the monitor saw; assess turns it into
// problems and states without I/O.
type observation struct {
	now      time.Time
	slotName string
	slot     postgres.SlotState
	slotErr  error
	// snapshotRows counts rows read by snapshots: a long snapshot is
	// progress too, while the slot's position waits for it.
	snapshotRows uint64
	snapshots    map[postgres.TableName]postgres.TableProgress
	kafkaErr     error
	storeErrs    map[string]error // by store name, only failing ones
	mappings     []watched
	lag          map[string]int64 // events pending by mapping (absent: unknown)
	stall        time.Duration
	maxRetained  int64 // bytes; 0: no limit
}

// assessment is the monitor's verdict: the reasons the daemon is not
// ready (none: ready) and each mapping's state.
type assessment struct {
	problems      []string
	sourceStalled bool
	walWarning    bool
	mappings      map[string]mappingView
}

// assess judges an observation. src and sinks carry progress between
// rounds (sinks by mapping name).
func assess(o observation, src *progress, sinks map[string]*progress) assessment {
	var a assessment
	a.mappings = map[string]mappingView{}
	bad := func(format string, args ...any) { a.problems = append(a.problems, fmt.Sprintf(format, args...)) }
	switch {
	case o.slotErr != nil:
		bad("source: %v", o.slotErr)
	case !o.slot.Exists:
		bad("source: slot %s does not exist yet (the source creates it when it starts)", o.slotName)
	default:
		switch o.slot.WALStatus {
		case "unreserved":
			a.walWarning = true
			bad("slot %s: wal_status is unreserved: PostgreSQL will remove WAL the slot still needs at its next checkpoint (max_slot_wal_keep_size is exceeded); the source must catch up now", o.slotName)
		case "lost":
			a.walWarning = true
			bad("slot %s: wal_status is lost: PostgreSQL removed WAL the slot needed; changes were lost (see docs/operations.md)", o.slotName)
		}
		if r := o.slot.RetainedWAL(); o.maxRetained > 0 && r > o.maxRetained {
			a.walWarning = true
			bad("slot %s retains %.1f MB of WAL, over SCOOP_MAX_RETAINED_WAL_MB=%d", o.slotName, mb(r), o.maxRetained>>20)
		}
		pending := o.slot.CurrentLSN > o.slot.ConfirmedLSN
		// Both only grow, so their sum moves when either does.
		if still := src.update(o.slot.ConfirmedLSN+o.snapshotRows, pending, o.now); still > o.stall {
			a.sourceStalled = true
			conn := "a walsender streams from it"
			if !o.slot.Active {
				conn = "no walsender streams from it"
			}
			bad("source stalled: slot %s has confirmed nothing for %s while WAL is pending (confirmed %s, server at %s; %s)",
				o.slotName, still.Round(time.Second), lsnText(o.slot.ConfirmedLSN), lsnText(o.slot.CurrentLSN), conn)
		}
	}
	if o.kafkaErr != nil {
		bad("kafka unreachable: %v", o.kafkaErr)
	}
	var stores []string
	for name := range o.storeErrs {
		stores = append(stores, name)
	}
	sort.Strings(stores)
	for _, name := range stores {
		bad("store %s unreachable: %v", name, o.storeErrs[name])
	}
	seen := map[string]bool{}
	for _, m := range o.mappings {
		name := m.name()
		seen[name] = true
		v := mappingView{State: "streaming", LagEvents: -1}
		if n, ok := o.lag[name]; ok {
			v.LagEvents = n
		}
		if e := m.stats.LastError.Load(); e != nil {
			v.Reason = *e
		}
		p := sinks[name]
		if p == nil {
			p = &progress{}
			sinks[name] = p
		}
		still := p.update(m.stats.Applied.Load(), v.LagEvents > 0, o.now)
		schemaName, table := m.SourceTable()
		tn := postgres.TableName{Schema: schemaName, Name: table}
		switch {
		case m.stats.SchemaMismatch.Load():
			v.State = "failing"
			bad("mapping %s failing: %s", name, v.Reason)
		case m.stats.Paused.Load():
			v.State = "paused"
			if v.Reason == "" {
				v.Reason = "store " + m.target() + " failing"
			}
			bad("mapping %s paused: store %s: %s", name, m.target(), v.Reason)
		case still > o.stall:
			v.State = "stalled"
			v.Reason = fmt.Sprintf("%d events pending, none applied for %s", v.LagEvents, still.Round(time.Second))
			bad("mapping %s stalled: %s", name, v.Reason)
		case !m.reverse && o.slot.Snapshotted != nil && !o.slot.Snapshotted[tn]:
			v.State = "snapshotting"
			if p, ok := o.snapshots[tn]; ok {
				v.Snapshot = &p
			}
		}
		a.mappings[name] = v
	}
	for name := range sinks {
		if !seen[name] {
			delete(sinks, name)
		}
	}
	return a
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// lsnText writes an LSN as PostgreSQL does (X/Y, hexadecimal).
func lsnText(lsn uint64) string { return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)) }

// monitor runs the checks and keeps their last result.
type monitor struct {
	cfg      *Config
	stats    *postgres.SourceStats
	log      *slog.Logger
	mappings func() []watched
	admin    *kafka.Admin
	slots    *postgres.SlotMonitor

	mu     sync.Mutex
	ticks  map[string]time.Time // loop name -> its last tick
	obs    observation
	result assessment
	src    progress
	sinks  map[string]*progress
	ran    bool
	// history is the lag of recent rounds, for the status page's chart.
	history []lagSample
	rates   throughput
}

func newMonitor(cfg *Config, stats *postgres.SourceStats, mappings func() []watched) (*monitor, error) {
	ad, err := kafka.NewAdmin(cfg.KafkaBrokers, cfg.KafkaSecurity())
	if err != nil {
		return nil, err
	}
	return &monitor{cfg: cfg, stats: stats, log: cfg.Logger(), mappings: mappings, admin: ad,
		slots: postgres.NewSlotMonitor(cfg.SourceURL, cfg.Slot), ticks: map[string]time.Time{}, sinks: map[string]*progress{}}, nil
}

// tick records that a loop of the daemon is alive.
func (m *monitor) tick(loop string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ticks[loop] = time.Now()
}

// stuckLoops names the loops that have not ticked within limit.
func (m *monitor) stuckLoops(now time.Time, limit time.Duration) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for loop, at := range m.ticks {
		if d := now.Sub(at); d > limit {
			out = append(out, fmt.Sprintf("%s loop has not ticked for %s", loop, d.Round(time.Second)))
		}
	}
	sort.Strings(out)
	return out
}

// healthLimit is how long a loop may go without ticking before /healthz
// fails: the reconcile loop ticks every second, the monitor every interval
// (plus its checks' timeout).
func (m *monitor) healthLimit() time.Duration {
	return max(30*time.Second, 3*m.cfg.MonitorInterval+2*m.checkTimeout())
}

func (m *monitor) checkTimeout() time.Duration { return max(5*time.Second, m.cfg.MonitorInterval) }

// run checks at once, then every SCOOP_MONITOR_INTERVAL, until ctx ends.
func (m *monitor) run(ctx context.Context) error {
	defer m.slots.Close()
	t := time.NewTicker(m.cfg.MonitorInterval)
	defer t.Stop()
	for {
		m.tick("monitor")
		m.check(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (m *monitor) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, m.checkTimeout())
	defer cancel()
	o := observation{now: time.Now(), slotName: m.cfg.Slot, stall: m.cfg.StallTimeout, maxRetained: int64(m.cfg.MaxRetainedWALMB) << 20,
		storeErrs: map[string]error{}, lag: map[string]int64{}, mappings: m.mappings()}
	o.snapshotRows = m.stats.SnapshotRows.Load()
	o.snapshots = m.stats.Snapshots.Tables()
	o.slot, o.slotErr = m.slots.Read(ctx)
	if o.slotErr == nil && o.slot.Exists {
		m.stats.RetainedWAL.Store(o.slot.RetainedWAL())
	}
	o.kafkaErr = m.admin.Ping(ctx)
	stores := map[string]bool{}
	for _, w := range o.mappings {
		if !w.reverse {
			stores[strings.ToLower(w.Store)] = true
		}
		if o.kafkaErr != nil {
			continue
		}
		n, err := m.admin.Lag(ctx, w.group(m.cfg.TopicPrefix), w.topic(m.cfg.TopicPrefix))
		switch {
		case errors.Is(err, kafka.ErrNoTopic):
			o.lag[w.name()] = 0
		case err == nil:
			o.lag[w.name()] = n
		default:
			m.log.Debug("monitor: consumer lag", "mapping", w.name(), "error", err)
		}
	}
	for name := range stores {
		if err := probeStore(ctx, m.cfg.Stores[name]); err != nil {
			o.storeErrs[name] = err
		}
	}
	m.mu.Lock()
	res := assess(o, &m.src, m.sinks)
	before := m.result.problems
	m.obs, m.result, m.ran = o, res, true
	m.mu.Unlock()
	logChanges(m.log, before, res.problems)
	m.rates.observe(o.now, o.mappings, m.cfg.MonitorInterval)
	m.record(o.now, o.mappings)
}

// logChanges logs each problem when it appears and when it clears.
func logChanges(log *slog.Logger, before, after []string) {
	was := map[string]bool{}
	for _, p := range before {
		was[p] = true
	}
	now := map[string]bool{}
	for _, p := range after {
		now[p] = true
		if !was[p] {
			log.Error("not ready", "reason", p)
		}
	}
	for _, p := range before {
		if !now[p] {
			log.Info("cleared", "reason", p)
		}
	}
}

// problems returns the last round's reasons for not being ready.
func (m *monitor) problems() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.result.problems...)
}

// probeStore dials a store's address (any of its hosts): it says whether the
// network path is open; failures above it pause the mapping and show there.
func probeStore(ctx context.Context, raw string) error {
	addrs := storeAddrs(raw)
	if len(addrs) == 0 {
		return nil
	}
	var errs []error
	var d net.Dialer
	for _, addr := range addrs {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// storeAddrs lists host:port of a store URL (none for a socket path).
func storeAddrs(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil
	}
	port := "5432"
	if storeKind(raw) == "cassandra" {
		port = "9042"
	}
	var out []string
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), port)
		}
		out = append(out, h)
	}
	return out
}

// sourceLag is how far the stream is behind the monolith, in seconds: the
// delay with which the newest commit or heartbeat arrived (the source's
// clock in it against this host's), plus the time since then beyond one
// heartbeat interval. While the monolith is idle it stays near zero; when
// heartbeats stop arriving it grows.
func (m *monitor) sourceLag(now time.Time) float64 {
	return sourceLag(m.stats.LastCommit.Load(), m.stats.LastHeartbeat.Load(), m.stats.LastReceived.Load(), m.cfg.HeartbeatInterval, now)
}

func sourceLag(commitMS, heartbeatMS, receivedMS int64, heartbeat time.Duration, now time.Time) float64 {
	sent := max(commitMS, heartbeatMS)
	if sent == 0 || receivedMS == 0 {
		return 0
	}
	transit := time.Duration(max(0, receivedMS-sent)) * time.Millisecond
	overdue := now.Sub(time.UnixMilli(receivedMS)) - max(0, heartbeat)
	return (transit + max(0, overdue)).Seconds()
}

// mappingLag is a mapping's end-to-end lag in seconds: the source's lag
// when nothing waits in its topic; else the delay with which its last change
// was applied (commit time against apply time) plus how long events have
// waited without progress, and never less than the source's lag.
func (m *monitor) mappingLag(name string, st *kafka.ConsumerStats, lagEvents int64, now time.Time) float64 {
	src := m.sourceLag(now)
	if lagEvents == 0 {
		return src
	}
	var stuck time.Duration
	m.mu.Lock()
	if p := m.sinks[name]; p != nil && lagEvents > 0 && !p.since.IsZero() {
		stuck = now.Sub(p.since)
	}
	m.mu.Unlock()
	var transit time.Duration
	if c, at := st.LastCommit.Load(), st.LastApplied.Load(); c > 0 && at > c {
		transit = time.Duration(at-c) * time.Millisecond
	}
	return max(src, (transit + stuck).Seconds())
}

// view is the last round as the status page and the metrics show it.
func (m *monitor) view() (observation, assessment, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.obs, m.result, m.ran
}

var walStatuses = []string{"reserved", "extended", "unreserved", "lost"}

var (
	descReady        = prometheus.NewDesc("scoop_ready", "1 when /readyz answers 200: source advancing, Kafka and every store reachable, no mapping paused or stalled, slot WAL within limits.", nil, nil)
	descKafkaUp      = prometheus.NewDesc("scoop_kafka_up", "1 when Kafka answered the last check.", nil, nil)
	descStoreUp      = prometheus.NewDesc("scoop_store_up", "1 when the store's address answered the last check.", []string{"store"}, nil)
	descWALStatus    = prometheus.NewDesc("scoop_source_slot_wal_status", "1 for the slot's current wal_status (reserved, extended, unreserved, lost).", []string{"status"}, nil)
	descWALLimit     = prometheus.NewDesc("scoop_source_retained_wal_limit_bytes", "SCOOP_MAX_RETAINED_WAL_MB in bytes (0: no limit).", nil, nil)
	descSlotActive   = prometheus.NewDesc("scoop_source_slot_active", "1 while a walsender streams from the slot.", nil, nil)
	descConfirmed    = prometheus.NewDesc("scoop_source_confirmed_lsn", "The slot's confirmed_flush_lsn on the server.", nil, nil)
	descStalled      = prometheus.NewDesc("scoop_source_stalled", "1 while WAL is pending and the slot has confirmed nothing for SCOOP_STALL_TIMEOUT.", nil, nil)
	descSinkLagEvts  = prometheus.NewDesc("scoop_sink_lag_events", "Messages in the mapping's topic its consumer group has not committed.", []string{"mapping"}, nil)
	descSinkState    = prometheus.NewDesc("scoop_sink_state", "1 for the mapping's current state (streaming, snapshotting, paused, failing, stalled).", []string{"mapping", "state"}, nil)
	mappingStates    = []string{"streaming", "snapshotting", "paused", "failing", "stalled"}
	descThroughput   = prometheus.NewDesc("scoop_sink_throughput", "Changes applied per second, averaged over the monitor's recent rounds (about 10 s).", []string{"mapping"}, nil)
	descSnapRows     = prometheus.NewDesc("scoop_source_snapshot_table_rows", "Rows the table's last snapshot (initial or incremental) has read so far on this instance.", []string{"table"}, nil)
	descSnapEstimate = prometheus.NewDesc("scoop_source_snapshot_table_estimated_rows", "The planner's estimate of the table's rows when its snapshot began (0: never analysed).", []string{"table"}, nil)
	descSnapDone     = prometheus.NewDesc("scoop_source_snapshot_table_done", "1 once the table's snapshot has read every row.", []string{"table"}, nil)
)

// Describe sends nothing: the monitor is an unchecked collector (its label
// values come and go with mappings and stores).
func (m *monitor) Describe(chan<- *prometheus.Desc) {}

// Collect reports the last round of checks.
func (m *monitor) Collect(ch chan<- prometheus.Metric) {
	o, a, ran := m.view()
	if !ran {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descReady, b2f(len(a.problems) == 0))
	gauge(descKafkaUp, b2f(o.kafkaErr == nil))
	gauge(descWALLimit, float64(o.maxRetained))
	gauge(descStalled, b2f(a.sourceStalled))
	if o.slotErr == nil && o.slot.Exists {
		for _, s := range walStatuses {
			gauge(descWALStatus, b2f(o.slot.WALStatus == s), s)
		}
		gauge(descSlotActive, b2f(o.slot.Active))
		gauge(descConfirmed, float64(o.slot.ConfirmedLSN))
	}
	stores := map[string]bool{}
	for _, w := range o.mappings {
		if !w.reverse {
			stores[strings.ToLower(w.Store)] = true
		}
		v := a.mappings[w.name()]
		if v.LagEvents >= 0 {
			gauge(descSinkLagEvts, float64(v.LagEvents), w.name())
		}
		for _, s := range mappingStates {
			gauge(descSinkState, b2f(v.State == s), w.name(), s)
		}
		gauge(descThroughput, m.rates.rate(w.name()), w.name())
	}
	for t, p := range o.snapshots {
		gauge(descSnapRows, float64(p.Rows), t.String())
		gauge(descSnapEstimate, float64(p.Estimate), t.String())
		gauge(descSnapDone, b2f(p.Done), t.String())
	}
	for s := range stores {
		_, down := o.storeErrs[s]
		gauge(descStoreUp, b2f(!down), s)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
