package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// runLatency runs the commit -> apply phase twice: at half the PG sink rate
// measured on the main workload (or BENCH_LATENCY_RATE), and at a fixed
// rate (BENCH_LATENCY_FIXED_RATE, 5,000 rows/s; 0 skips it).
func (b *bench) runLatency(ctx context.Context) {
	rate := b.cfg.latencyRate
	basis := "BENCH_LATENCY_RATE"
	if rate == 0 {
		rate, basis = 1000, "default (no PG sink rate measured)"
		for _, w := range b.res.Workloads {
			// Source and sink run in one process here, as in the end to
			// end run; the sink alone on a filled topic is faster.
			if w.Name == "insert" && w.PGEndToEnd != nil {
				rate, basis = math.Max(50, math.Round(w.PGEndToEnd.PerSec/2)), "half the measured end-to-end PG rate of the insert workload (source and sink in one process)"
			} else if w.Name == "insert" && w.PGSink != nil {
				rate, basis = math.Max(50, math.Round(w.PGSink.PerSec/2)), "half the measured PG sink rate of the insert workload"
			}
		}
	}
	b.res.Latency = b.runLatencyAt(ctx, "lat", rate, basis)
	if b.cfg.latencyFixedRate > 0 && ctx.Err() == nil {
		b.res.LatencyFixed = b.runLatencyAt(ctx, "lat5k", b.cfg.latencyFixedRate, "fixed (BENCH_LATENCY_FIXED_RATE)")
	}
}

// runLatencyAt writes small transactions at a steady rate while scoop runs
// live (source + PostgreSQL sink) and measures, per row, the time from the
// monolith commit (pg_xact_commit_timestamp) to the row's insert time in the
// sink's transaction (applied_at, DEFAULT clock_timestamp() on a pre-created
// target): same server, same clock. The service side's own commit timestamp
// cannot be used: a session with a replication origin (the sink's) records
// the origin timestamp of its first transaction for all later ones.
func (b *bench) runLatencyAt(ctx context.Context, name string, rate float64, basis string) *latencyResult {
	lr := &latencyResult{RateTarget: rate, RateBasis: basis, Seconds: b.cfg.latencySecs}
	label := fmt.Sprintf("latency at %.0f rows/s", rate)
	fail := func(what string, err error) *latencyResult {
		b.fail(label+": "+what, err)
		return lr
	}
	table := b.id + "_" + name
	if err := b.createMonoTable(ctx, table); err != nil {
		return fail("create table", err)
	}
	r := b.newRole(name, "pg", table)
	if err := b.createSvcTable(ctx, r.target, tableColumns+", applied_at timestamptz NOT NULL DEFAULT clock_timestamp()"); err != nil {
		return fail("create target", err)
	}
	if err := b.createTopics(ctx, r.topic, r.dlq); err != nil {
		return fail("topics", err)
	}
	defer b.dropSlot(r.slot)
	meter := b.startCPU()
	p, err := b.startScoop("latency", r)
	if err != nil {
		return fail("start scoop", err)
	}
	defer b.stopProc(p)
	if _, err := waitCount(ctx, p, p.start, 1, 2*time.Minute, 50*time.Millisecond, func(c context.Context) (int64, error) { return b.snapshotted(c, r.slot) }); err != nil {
		return fail("scoop not ready", err)
	}
	svcCount := func(c context.Context) (int64, error) {
		var n int64
		err := b.svc.QueryRow(c, `SELECT count(*) FROM `+r.target).Scan(&n)
		return n, err
	}
	// Warm-up: 10 rows through the whole path (the consumer group has joined).
	const warm = 10
	if _, err := b.mono.Exec(ctx, insertSQL(table, 1, warm, 0)); err != nil {
		return fail("warm-up", err)
	}
	if _, err := waitCount(ctx, p, time.Now(), warm, 2*time.Minute, 50*time.Millisecond, svcCount); err != nil {
		return fail("warm-up rows not applied", err)
	}
	waited, busy := settle(ctx)
	lr.SettleSeconds, lr.BusyAtStart = math.Round(waited.Seconds()*10)/10, math.Round(busy*100)/100
	logf("%s for %.0fs (%s); the machine settled in %.1fs (%.0f%% busy)", label, b.cfg.latencySecs, basis, waited.Seconds(), busy*100)
	conn, err := b.mono.Acquire(ctx)
	if err != nil {
		return fail("connect", err)
	}
	next := int64(warm + 1)
	// When each record reached Kafka: where the time goes, commit -> Kafka
	// (source) and Kafka -> applied (sink).
	offsets := b.watchOffsets(ctx, r.topic)
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	var txs int
	for {
		<-tick.C
		el := time.Since(start).Seconds()
		if el >= b.cfg.latencySecs || ctx.Err() != nil {
			break
		}
		due := int64(warm) + int64(rate*el)
		if due < next {
			continue
		}
		hi := min(due, next+4999)
		if _, err := conn.Exec(ctx, insertSQL(table, next, hi, 0)); err != nil {
			b.fail(label+": write", err)
			break
		}
		txs++
		next = hi + 1
	}
	tick.Stop()
	conn.Release()
	written := next - 1 - warm
	lr.Rows = written
	lr.Transactions = txs
	lr.RateAchieved = float64(written) / time.Since(start).Seconds()
	_, err = waitCount(ctx, p, time.Now(), next-1, 2*time.Minute, 50*time.Millisecond, svcCount)
	samples := offsets()
	if err != nil {
		return fail("rows not applied", err)
	}
	cpu := meter.stop(ctx, b, p)
	lr.PeakRSSMB = p.peakRSSMB()
	lr.CPUUSPerChange = usPerChange(cpu, int(next-1))
	b.res.Phases = append(b.res.Phases, phaseRSS{Phase: label + " (live: source + PG sink)", PeakRSSMB: lr.PeakRSSMB, Seconds: time.Since(p.start).Seconds(),
		Changes: int(next - 1), CPUUSPerChange: lr.CPUUSPerChange, CPU: cpu})

	commits := map[int64]time.Time{}
	rows, err := b.mono.Query(ctx, `SELECT id, pg_xact_commit_timestamp(xmin) FROM `+table+` WHERE id > $1`, warm)
	if err != nil {
		return fail("read commit times", err)
	}
	for rows.Next() {
		var id int64
		var t time.Time
		if err := rows.Scan(&id, &t); err != nil {
			rows.Close()
			return fail("read commit times", err)
		}
		commits[id] = t
	}
	rows.Close()
	appended, err := b.appendTimes(ctx, r.topic, samples)
	if err != nil {
		b.fail(label+": read the topic's append times", err)
	}
	var toApplied, toKafka, kafkaToApplied []float64
	rows, err = b.svc.Query(ctx, `SELECT id, applied_at FROM `+r.target+` WHERE id > $1`, warm)
	if err != nil {
		return fail("read apply times", err)
	}
	for rows.Next() {
		var id int64
		var a time.Time
		if err := rows.Scan(&id, &a); err != nil {
			rows.Close()
			return fail("read apply times", err)
		}
		if src, ok := commits[id]; ok {
			toApplied = append(toApplied, a.Sub(src).Seconds()*1000)
			if k, ok := appended[id]; ok {
				toKafka = append(toKafka, k.Sub(src).Seconds()*1000)
				kafkaToApplied = append(kafkaToApplied, a.Sub(k).Seconds()*1000)
			}
		}
	}
	rows.Close()
	if len(toApplied) == 0 {
		return fail("no rows", fmt.Errorf("no rows measured"))
	}
	lr.P50, lr.P95, lr.P99, lr.Max = percentiles(toApplied)
	if len(toKafka) > 0 {
		lr.Source, lr.Sink = &latencySplit{}, &latencySplit{}
		lr.Source.P50, lr.Source.P95, lr.Source.P99, lr.Source.Max = percentiles(toKafka)
		lr.Sink.P50, lr.Sink.P95, lr.Sink.P99, lr.Sink.Max = percentiles(kafkaToApplied)
		logf("%s: commit->in Kafka p50 %.1f / p95 %.1f / p99 %.1f ms; in Kafka->apply p50 %.1f / p95 %.1f / p99 %.1f ms (%d rows)",
			label, lr.Source.P50, lr.Source.P95, lr.Source.P99, lr.Sink.P50, lr.Sink.P95, lr.Sink.P99, len(toKafka))
	}
	logf("%s: %d rows in %d transactions at %.0f rows/s: commit->apply p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms; peak RSS %.1f MB",
		label, written, txs, lr.RateAchieved, lr.P50, lr.P95, lr.P99, lr.Max, lr.PeakRSSMB)
	if !b.cfg.keep {
		b.mono.Exec(ctx, "DROP TABLE IF EXISTS "+table)
	}
	return lr
}

func percentiles(v []float64) (p50, p95, p99, mx float64) {
	sort.Float64s(v)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(v)))) - 1
		return v[max(0, min(i, len(v)-1))]
	}
	return at(0.50), at(0.95), at(0.99), v[len(v)-1]
}

// runSnapshot: a pre-filled table, COPY TO STDOUT of it, then scoop on a
// fresh slot until the topic holds every row (sink parked), then Kafka's
// producer on the same records; the limit is min(COPY TO, that produce).
func (b *bench) runSnapshot(ctx context.Context) {
	n := b.cfg.snapshotRows
	sr := &snapshotResult{Rows: n}
	b.res.Snapshot = sr
	table := b.id + "_snap"
	logf("=== snapshot of %d rows", n)
	if err := b.createMonoTable(ctx, table); err != nil {
		b.fail("snapshot: create table", err)
		return
	}
	if err := b.fill(ctx, table, n, 50000); err != nil {
		b.fail("snapshot: fill", err)
		return
	}
	b.mono.Exec(ctx, "VACUUM ANALYZE "+table)
	b.rawCopyTo(ctx, table) // warm the cache the same way for both readers
	rows, secs, err := b.rawCopyTo(ctx, table)
	if err != nil {
		b.fail("snapshot: COPY TO", err)
	} else {
		sr.CopyTo = &rate{Seconds: secs, PerSec: float64(rows) / secs, Rows: rows}
		logf("snapshot: COPY TO STDOUT of %d rows in %.2fs: %.0f rows/s", rows, secs, sr.CopyTo.PerSec)
	}
	r := b.newRole("snap", "parked", table)
	defer b.dropSlot(r.slot)
	if err := b.createTopics(ctx, r.topic, r.dlq); err != nil {
		b.fail("snapshot: topics", err)
		return
	}
	if err := b.createSvcTable(ctx, r.target, "id text PRIMARY KEY"); err != nil {
		b.fail("snapshot: parked target", err)
		return
	}
	w := &workload{name: "snapshot", changes: n, msgs: n}
	var prof *profileSpec
	if b.cfg.profile {
		prof = &profileSpec{fmt.Sprintf("snapshot of %d rows", n), "latest.cpu-snapshot.pprof", max(2, min(n/150_000, 60))}
	}
	pr, err := b.measure(ctx, w, r, "snapshot", func(c context.Context) (int64, error) { return b.topicCount(c, r.topic) }, 10*time.Millisecond, prof)
	if err != nil {
		b.fail("snapshot: scoop", err)
		return
	}
	sr.Scoop = pr
	// Kafka's producer on scoop's own snapshot records (sampled values, lz4,
	// large batches, like scoop's producer): the other half of the limit.
	if size, values, err := b.sampleRecords(ctx, r.topic); err != nil {
		b.fail("snapshot: sample records", err)
	} else {
		sr.EventBytes = size
		payloads := filepath.Join(b.logDir, "snapshot.payloads")
		if err := os.WriteFile(payloads, bytes.Join(values, []byte("\n")), 0o644); err != nil {
			b.fail("snapshot: payload file", err)
		} else if rps, line, err := b.rawProduce(ctx, table+"_perflz4", n, "--payload-file", payloads,
			"--command-property", "acks=all", "compression.type=lz4", "batch.size=1048576", "linger.ms=5"); err != nil {
			b.fail("snapshot: raw produce lz4", err)
		} else {
			secs := float64(n) / rps
			sr.ProduceLZ4 = &rate{Seconds: secs, PerSec: rps, RecordsPerSec: rps, Detail: line}
			logf("snapshot: lz4, scoop's records: %s", line)
		}
	}
	if pr.Limit = minRate(sr.CopyTo, sr.ProduceLZ4); pr.Limit > 0 {
		pr.Ratio = ratio(pr.PerSec, pr.Limit)
	}
	if sr.CopyTo != nil {
		sr.CopyToRatio = ratio(pr.PerSec, sr.CopyTo.PerSec)
	}
	if !b.cfg.keep {
		b.mono.Exec(ctx, "DROP TABLE IF EXISTS "+table)
	}
}

// profile runs scoop (source + one sink) on the insert backlog again and
// takes a CPU profile from its admin server (/debug/pprof/profile), for
// about as long as the measured run of the same sink took.
func (b *bench) profile(ctx context.Context, w *workload, r *role, label, file string, expect float64) (*scoopRate, error) {
	secs := int(math.Ceil(expect))
	secs = max(2, min(secs, 60))
	logf("%s: CPU profile of %s for %ds", w.name, label, secs)
	meter := b.startCPU()
	p, err := b.startScoop("profile", r)
	if err != nil {
		return nil, err
	}
	defer b.stopProc(p)
	if err := p.waitHTTP(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	got := p.cpuProfile(secs)
	g, werr := waitCount(ctx, p, p.start, int64(w.prefill+w.msgs), phaseTimeout(w.msgs), 25*time.Millisecond,
		b.appliedCount(r))
	res := <-got
	if res.err != nil {
		return nil, res.err
	}
	if werr != nil {
		return nil, werr
	}
	cpu := meter.stop(ctx, b, p)
	pi := &profileResult{Label: label + ", " + w.name + " backlog", Seconds: secs, DrainSeconds: g.wall(), PeakRSSMB: p.peakRSSMB()}
	b.res.Phases = append(b.res.Phases, phaseRSS{Phase: w.name + " " + label + " (profiled)", PeakRSSMB: pi.PeakRSSMB, Seconds: pi.DrainSeconds,
		Changes: w.changes, CPUUSPerChange: usPerChange(cpu, w.changes), CPU: cpu})
	if err := b.saveProfile(pi, res.data, file); err != nil {
		return nil, err
	}
	steady, ok := g.steadyRate(float64(w.changes), float64(w.changes)/float64(w.msgs))
	return &scoopRate{Seconds: g.wall(), PerSec: steady, Steady: ok, WallPerSec: float64(w.changes) / g.wall(),
		FirstProgress: g.first.Sub(g.start).Seconds(), PeakRSSMB: pi.PeakRSSMB, CPU: cpu, CPUUSPerChange: usPerChange(cpu, w.changes)}, nil
}

type profileData struct {
	data []byte
	err  error
}

// cpuProfile takes a CPU profile of secs seconds from the process's admin
// server (/debug/pprof/profile); a profile longer than the work only adds
// idle time, which has no samples.
func (p *scoopProc) cpuProfile(secs int) <-chan profileData {
	got := make(chan profileData, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.admin, secs))
		if err != nil {
			got <- profileData{err: err}
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("pprof: %s: %s", resp.Status, data)
		}
		got <- profileData{data, err}
	}()
	return got
}

// saveProfile writes a profile into the results and keeps its top lines
// for the report.
func (b *bench) saveProfile(pi *profileResult, data []byte, file string) error {
	if err := os.MkdirAll(b.cfg.outDir, 0o755); err != nil {
		return err
	}
	pi.File = filepath.Join(b.cfg.outDir, file)
	if err := os.WriteFile(pi.File, data, 0o644); err != nil {
		return err
	}
	flat, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", b.bin, pi.File).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %v: %s", err, flat)
	}
	cum, _ := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=60", b.bin, pi.File).CombinedOutput()
	pi.Text = "==== " + pi.Label + " ====\n" + string(flat) + "\n---- by cumulative time ----\n" + string(cum)
	pi.Top = parseTop(string(flat), 12, false)
	pi.TopCum = parseTop(string(cum), 25, true)
	b.res.Profiles = append(b.res.Profiles, pi)
	return nil
}

// parseTop keeps the table rows of `go tool pprof -top`; ownOnly keeps
// scoop's functions and the libraries it calls, not the runtime's frames.
func parseTop(out string, n int, ownOnly bool) []string {
	var rows []string
	in := false
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "flat ") {
			in = true
			continue
		}
		l = strings.TrimSpace(l)
		if !in || l == "" {
			continue
		}
		if ownOnly {
			f := strings.Fields(l)
			fn := f[len(f)-1]
			if strings.HasPrefix(fn, "runtime.") || strings.HasPrefix(fn, "main.start") || strings.HasPrefix(fn, "main.runMapping") ||
				strings.HasPrefix(fn, "main.(*daemon).supervise") || strings.HasPrefix(fn, "golang.org/x/sync/errgroup") {
				continue
			}
		}
		rows = append(rows, l)
		if len(rows) == n {
			break
		}
	}
	return rows
}
