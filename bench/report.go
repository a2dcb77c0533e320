package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// rate is a raw limit: how fast the tool moved the same data.
type rate struct {
	Seconds       float64 `json:"seconds"`
	PerSec        float64 `json:"per_s"` // changes/s (decode, produce) or rows/s (COPY, gocql loop)
	Rows          int64   `json:"rows,omitempty"`
	RecordsPerSec float64 `json:"records_per_s,omitempty"`
	Detail        string  `json:"detail,omitempty"`
}

// scoopRate is a scoop figure with its raw limit.
type scoopRate struct {
	Seconds       float64 `json:"seconds"`                // process start -> done
	FirstProgress float64 `json:"first_progress_seconds"` // process start -> first record/row
	PerSec        float64 `json:"per_s"`                  // steady: first progress -> done
	Steady        bool    `json:"steady"`                 // false: too fast to see, per_s is the wall rate
	WallPerSec    float64 `json:"wall_per_s"`             // including start-up
	Limit         float64 `json:"limit_per_s,omitempty"`  // PG sink: the psql upsert; snapshot: min(COPY TO, lz4 produce)
	Ratio         float64 `json:"ratio,omitempty"`
	CopyRatio     float64 `json:"copy_ratio,omitempty"` // PG sink: over COPY into a fresh table
	PeakRSSMB     float64 `json:"peak_rss_mb"`
	Check         string  `json:"check,omitempty"`
	// CPU seconds over the phase: scoop, its PostgreSQL backends (walsender,
	// sessions per database), the Kafka and Cassandra servers, the machine.
	CPU map[string]float64 `json:"cpu_seconds,omitempty"`
	// scoop's process CPU in µs per change (start-up included).
	CPUUSPerChange float64 `json:"scoop_cpu_us_per_change,omitempty"`
	// Sinks: the run that filled the topic (store unreachable), its CPU
	// seconds, and scoop's CPU per change over fill and sink together.
	FillCPU            map[string]float64 `json:"fill_cpu_seconds,omitempty"`
	ProcessUSPerChange float64            `json:"scoop_cpu_us_per_change_with_fill,omitempty"`
}

type workloadResult struct {
	Name          string     `json:"name"`
	Description   string     `json:"description"`
	Changes       int        `json:"changes"`
	Messages      int        `json:"messages"`
	Prefill       int        `json:"prefill_rows,omitempty"`
	WriteSeconds  float64    `json:"write_seconds"`
	WALMB         float64    `json:"wal_mb"`
	EventBytes    float64    `json:"mean_event_bytes"`
	RawDecode     *rate      `json:"raw_decode,omitempty"`
	RawProduce    *rate      `json:"raw_produce,omitempty"`
	RawProduceLZ4 *rate      `json:"raw_produce_lz4,omitempty"`
	Source        *scoopRate `json:"scoop_source,omitempty"`
	Upsert        *rate      `json:"raw_pg_upsert,omitempty"` // psql: COPY into staging + INSERT ... ON CONFLICT
	Copy          *rate      `json:"raw_copy,omitempty"`
	PGSink        *scoopRate `json:"scoop_pg_sink,omitempty"`
	CassLoop      *rate      `json:"raw_cassandra_loop,omitempty"`
	CassSink      *scoopRate `json:"scoop_cassandra_sink,omitempty"`
	// End to end (source and sink in one process, from the WAL backlog):
	// the profiled runs of the insert workload.
	PGEndToEnd   *scoopRate `json:"scoop_pg_end_to_end,omitempty"`
	CassEndToEnd *scoopRate `json:"scoop_cassandra_end_to_end,omitempty"`
}

// latencySplit is one part of commit -> apply, in ms: commit -> in Kafka
// (source), in Kafka -> apply (sink). "In Kafka" is the first moment the
// topic's end offset, sampled every 10 ms, had passed the record.
type latencySplit struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

type latencyResult struct {
	RateTarget   float64 `json:"rate_target_rows_per_s"`
	RateBasis    string  `json:"rate_basis"`
	RateAchieved float64 `json:"rate_achieved_rows_per_s"`
	Seconds      float64 `json:"seconds"`
	Rows         int64   `json:"rows"`
	Transactions int     `json:"transactions"`
	P50          float64 `json:"p50_ms"`
	P95          float64 `json:"p95_ms"`
	P99          float64 `json:"p99_ms"`
	Max          float64 `json:"max_ms"`
	// The wait for a quiet machine before the phase, and the share of the
	// machine's CPUs busy when it started.
	SettleSeconds float64 `json:"settle_seconds"`
	BusyAtStart   float64 `json:"machine_busy_at_start"`
	// Source: commit -> Kafka append; Sink: Kafka append -> apply.
	Source    *latencySplit `json:"commit_to_kafka,omitempty"`
	Sink      *latencySplit `json:"kafka_to_apply,omitempty"`
	PeakRSSMB float64       `json:"peak_rss_mb"`
	// scoop's process CPU in µs per change (source + sink; start-up and
	// idle time included).
	CPUUSPerChange float64 `json:"scoop_cpu_us_per_change,omitempty"`
}

type snapshotResult struct {
	Rows       int        `json:"rows"`
	EventBytes float64    `json:"mean_event_bytes,omitempty"`
	CopyTo     *rate      `json:"raw_copy_to,omitempty"`
	ProduceLZ4 *rate      `json:"raw_produce_lz4,omitempty"` // scoop's snapshot records, lz4, like scoop's producer
	Scoop      *scoopRate `json:"scoop,omitempty"`           // limit: min(COPY TO, lz4 produce)
	// scoop over COPY TO alone (the limit before issue #15).
	CopyToRatio float64 `json:"copy_to_ratio,omitempty"`
}

type phaseRSS struct {
	Phase          string             `json:"phase"`
	PeakRSSMB      float64            `json:"peak_rss_mb"`
	Seconds        float64            `json:"seconds"`
	Changes        int                `json:"changes,omitempty"`
	CPUUSPerChange float64            `json:"scoop_cpu_us_per_change,omitempty"`
	CPU            map[string]float64 `json:"cpu_seconds,omitempty"`
}

type profileResult struct {
	Label        string   `json:"label"`
	File         string   `json:"file"`
	Seconds      int      `json:"seconds"`
	DrainSeconds float64  `json:"drain_seconds"`
	PeakRSSMB    float64  `json:"peak_rss_mb"`
	Top          []string `json:"top_flat"`
	TopCum       []string `json:"top_cum"`
	Text         string   `json:"-"`
}

type target struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Goal   string  `json:"goal"`
	Met    bool    `json:"met"`
	Absent bool    `json:"not_measured,omitempty"`
}

// results is latest.json. The top-level figures are those of the main
// workload (small-row inserts), the snapshot and latency phases.
type results struct {
	Date         string         `json:"date"`
	Smoke        bool           `json:"smoke"`
	Git          string         `json:"git"`
	Host         string         `json:"host"`
	LoadStart    string         `json:"loadavg_start"`
	LoadEnd      string         `json:"loadavg_end"`
	TotalSeconds float64        `json:"total_seconds"`
	Sizes        map[string]int `json:"sizes"`
	ScoopEnv     []string       `json:"scoop_env,omitempty"`

	PGToKafkaRatio *float64 `json:"pg_to_kafka_ratio"`
	PGSinkRatio    *float64 `json:"pg_sink_ratio"` // over COPY into a fresh table (reference)
	// over the server's own upsert (psql: COPY into staging + INSERT ...
	// SELECT ... ON CONFLICT DO UPDATE): the PG sink's target.
	PGUpsertLimitRatio *float64 `json:"pg_upsert_limit_ratio"`
	CassandraSinkRatio *float64 `json:"cassandra_sink_ratio"`
	SnapshotRatio      *float64 `json:"snapshot_ratio"`
	P99CommitToApplyMS *float64 `json:"p99_commit_to_apply_ms"`
	P99At5kMS          *float64 `json:"p99_at_5k_ms"` // the latency phase at BENCH_LATENCY_FIXED_RATE (5,000 rows/s)
	// scoop's process CPU in µs per change, main workload: source (alone),
	// pg_sink and cassandra_sink (the sink phase's process, which also runs
	// the source, minus the source alone), their *_process totals, snapshot.
	CPUUSPerChange map[string]float64 `json:"cpu_us_per_change"`
	// The reverse phase: service -> monolith rows/s over the raw psql
	// upsert's, and the p99 from the service commit to the monolith.
	ReverseRatio              *float64 `json:"reverse_ratio"`
	P99ReverseCommitToApplyMS *float64 `json:"p99_reverse_commit_to_apply_ms"`
	PeakRSSMB                 *float64 `json:"peak_rss_mb"`
	// The verify phase: a clean verify's rows/s over the raw read of the
	// same table (COPY TO; a full Cassandra scan), and its peak heap (max
	// over both store kinds).
	VerifyPGRatio        *float64 `json:"verify_pg_ratio"`
	VerifyCassandraRatio *float64 `json:"verify_cassandra_ratio"`
	VerifyPeakHeapMB     *float64 `json:"verify_peak_heap_mb"`
	// scoop CPU per change into PostgreSQL, schemas / plain: fill + sink
	// phases, and end to end in one process (the profiled runs).
	SchemasCPURatio         *float64 `json:"schemas_cpu_ratio,omitempty"`
	SchemasCPURatioEndToEnd *float64 `json:"schemas_cpu_ratio_end_to_end,omitempty"`

	// The figures behind the ratios (main workload; changes/s or rows/s).
	Scoop map[string]float64 `json:"scoop"`
	Raw   map[string]float64 `json:"raw"`

	Targets   []target          `json:"targets"`
	Workloads []*workloadResult `json:"workloads"`
	Latency   *latencyResult    `json:"latency,omitempty"`
	// The latency phase at the fixed rate (BENCH_LATENCY_FIXED_RATE).
	LatencyFixed *latencyResult   `json:"latency_fixed_rate,omitempty"`
	Reverse      *reverseResult   `json:"reverse,omitempty"`
	Verify       *verifyResult    `json:"verify,omitempty"`
	Snapshot     *snapshotResult  `json:"snapshot,omitempty"`
	Phases       []phaseRSS       `json:"peak_rss_by_phase"`
	Profiles     []*profileResult `json:"cpu_profiles,omitempty"`
	Method       []string         `json:"method"`
	Errors       []string         `json:"errors"`
}

var methodNotes = []string{
	"Each workload is written once into a fresh monolith table while no consumer runs; every measured consumer then drains that same WAL backlog from its own slot created before the workload (pg_recvlogical, scoop source only, scoop filling a sink's topic then that sink alone, for PostgreSQL and for Cassandra, and the profiled end-to-end runs).",
	"raw decode: pg_recvlogical -o proto_version=1 -o publication_names=<scoop's publication> -o messages=true -f /dev/null --endpos=<flush LSN after the last commit>; wall time incl. connection; the faster of two slots.",
	"raw produce: org.apache.kafka.tools.ProducerPerformance --num-records <records scoop wrote> --record-size <mean key+value size of scoop's records> --throughput -1 --command-property acks=all (random payload, no compression, default 16 KB batches), on a fresh topic with scoop's 3 partitions; its own records/s (excludes JVM start). raw produce lz4: the same with --payload-file <values sampled from scoop's topic> and compression.type=lz4 batch.size=1048576 linger.ms=5, like scoop's producer (lz4, large batches). The source's limit is min(raw decode, the faster of the two).",
	"scoop source: `scoop run` whose only mapping has its PostgreSQL sink parked (the target table is incompatible, so the sink waits with backoff and does not compete for the CPUs); done when the topic holds every record (sum of end offsets), i.e. every event is acknowledged by Kafka (acks=all); the slot's confirmed_flush_lsn follows within scoop's 1 s status interval.",
	"scoop sinks: first the sink role's `scoop run` fills its topic with its store unreachable (the source decodes and produces the backlog; the sink only retries its connection and commits nothing, which is checked), then `scoop run` with one mapping into the service PostgreSQL database or a Cassandra keyspace drains that filled topic with its source caught up (after a CHECKPOINT lets the slot's restart_lsn pass the backlog, so its walsender decodes little or nothing again: restart_lag_mb in the fill's figures; the walsender's CPU is in the phase's), as the raw limits it is compared with (psql's upsert, the gocql loop) have no source sharing the two cores; done when the mapping's consumer group has committed every record (scoop commits offsets only after the store committed the rows; the commit to Kafka is asynchronous, once a second, so for the PostgreSQL sink, whose phases last a few seconds, progress is read from its own offsets in scoop.sink_offsets, written in the same transaction as the rows, or the group's when larger); the store's contents are then checked against the monolith (count, sum). End to end (source and sink in one process from the WAL backlog) is the profiled run of the insert workload, and the latency phase runs at half that rate. The sink phases of the insert workload and the snapshot phase are profiled while measured (/debug/pprof/profile, about 1% of scoop's CPU).",
	"per_s of a scoop figure is the steady rate, from the first observed progress (source alone and snapshot: the first event scoop decodes, from its /status counters polled every 5 ms; sinks: the first committed batch, polled every 25 ms) to done (topic complete, polled every 10 ms; sink committed everything), which leaves out process start (scoop's supervisor starts the source after its first 1 s tick), slot and group joins; wall_per_s includes them. Ratios use per_s. When the window is too short to resolve (steady=false), per_s is the wall rate.",
	"Start and Cassandra warm-up: a run starts once the machine is quiet (under a quarter busy over a second, a minute at most); then, before the first workload, the gocql loop writes up to 1,000,000 synthetic rows (a minute at most) into a scratch table, so the first Cassandra phase (a scoop sink, measured before its gocql loop) does not run on a JVM whose write path is not compiled yet.",
	"Changes are row changes; a delete is one change but two Kafka records (event + tombstone). Raw COPY and the gocql loop write the workload table's final rows; the sink ratio compares changes/s with rows/s.",
	"raw PG upsert (the PG sink's limit): psql -X -1 -f on a script that COPYs the table's final rows (\\copy of a COPY TO file) into a temporary staging table (temp_buffers 256MB) and runs one INSERT INTO <target> SELECT ... FROM staging ON CONFLICT (id) DO UPDATE SET <every column>, into a fresh service table that holds beforehand (loaded and vacuumed before the clock starts) the rows with id <= the workload's pre-fill, as scoop's target did; timed: the whole psql run. raw COPY (reference): COPY ... FROM STDIN of the same rows into a fresh service table with the same columns and primary key. raw Cassandra: prepared INSERT of the same rows, 64 in flight, token-aware, LOCAL_QUORUM, into a table of the CQL types scoop creates.",
	"latency: scoop live (source + PostgreSQL sink, a fresh process, slot and table per rate), a transaction every 10 ms at a steady rate; per row, applied_at (DEFAULT clock_timestamp() on a pre-created target: the insert inside the sink's transaction, a few ms before its commit) minus the monolith commit time (pg_xact_commit_timestamp(xmin)); same server, same clock. The sink transactions' own commit timestamps are unusable: under a replication origin session PostgreSQL records the first transaction's timestamp for all later ones.",
	"reverse: one live scoop process with a direction-both mapping into the service PostgreSQL database (forward source and sink, reverse source on a slot in the service database, reverse topic, reverse sink into the monolith under last-writer-wins). Bulk: one INSERT ... SELECT of the rows into the service table; rows/s from the first row present in the monolith to the last (count polled every 25 ms; wall: from the service commit). Raw: the same rows through psql -f, INSERT ... VALUES of 1,000 rows ... ON CONFLICT (id) DO UPDATE, into a monolith table of the same columns, after scoop stopped. Stream: single-row service transactions at a fixed rate; per row, applied_at (DEFAULT clock_timestamp() on the monolith table, a column the mapping excludes: the reverse sink's insert) minus the service commit time (pg_xact_commit_timestamp(xmin)); same server, same clock.",
	"snapshot: a pre-filled table; scoop on a fresh slot with the sink parked, until the topic holds every row, against min(COPY table TO STDOUT after one warm-up read, ProducerPerformance of as many records with --payload-file <values sampled from scoop's snapshot topic> and compression.type=lz4 batch.size=1048576 linger.ms=5 acks=all, like scoop's producer).",
	"CPU per change: scoop's process CPU (user + system from /proc/<pid>/stat, start-up included) over the phase / the phase's row changes. A sink phase's process drains a filled topic (its source is caught up and idle): that is the sink's CPU; with the fill run's CPU added, the whole path from the WAL into the store (`*_process` in cpu_us_per_change, and the schemas / plain ratio).",
	"latency at a fixed rate: the latency phase again at BENCH_LATENCY_FIXED_RATE (5,000 rows/s), target p99 <= 50 ms.",
	"peak RSS: VmHWM of each measured scoop process (one process per phase), read just before SIGTERM.",
	"verify: a table of (id bigint PRIMARY KEY, amount numeric(12,2), note text, at timestamptz), filled in the monolith and copied into the service database (COPY) and into a Cassandra table of scoop's CQL types; a clean verify (verify.Run, what `scoop verify NAME` runs, without a pipeline to settle: a clean pair has no suspects) in the bench process, its rows / the report's seconds (connections and planning included), must find the pair equal with every row. Raw: the faster of two reads of the whole table, COPY table TO STDOUT of the monolith table (PostgreSQL target), SELECT of every column over the full token range in pages of 5,000 (Cassandra). Memory: the Go heap in use, sampled every 25 ms during the verify, and its peak; the live heap (/gc/heap/live:bytes, what the last GC kept) at its peak in each half of the run (flat: the second half's peak within 1.5x or 2 MB of the first's; judged with 8 samples a half or more), and the bench process's VmHWM reset just before the verify (/proc/self/clear_refs) next to its resident set then.",
}

func f64(v float64) *float64 { return &v }

// summarize fills the top-level figures and targets.
func (b *bench) summarize() {
	r := b.res
	r.Scoop, r.Raw = map[string]float64{}, map[string]float64{}
	var main *workloadResult
	for _, w := range r.Workloads {
		if w.Name == "insert" {
			main = w
		}
	}
	add := func(name string, value *float64, goal string, met func(float64) bool) {
		t := target{Name: name, Goal: goal}
		if value == nil {
			t.Absent = true
		} else {
			t.Value, t.Met = *value, met(*value)
		}
		r.Targets = append(r.Targets, t)
	}
	if main != nil {
		if main.RawDecode != nil {
			r.Raw["decode_changes_per_s"] = main.RawDecode.PerSec
		}
		if main.RawProduce != nil {
			r.Raw["produce_changes_per_s"] = main.RawProduce.PerSec
			r.Raw["produce_records_per_s"] = main.RawProduce.RecordsPerSec
		}
		if main.Copy != nil {
			r.Raw["copy_rows_per_s"] = main.Copy.PerSec
		}
		if main.Upsert != nil {
			r.Raw["pg_upsert_rows_per_s"] = main.Upsert.PerSec
		}
		if main.CassLoop != nil {
			r.Raw["cassandra_loop_rows_per_s"] = main.CassLoop.PerSec
		}
		if s := main.Source; s != nil {
			r.Scoop["source_changes_per_s"] = s.PerSec
			r.Raw["source_limit_changes_per_s"] = s.Limit
			if s.Limit > 0 {
				r.PGToKafkaRatio = f64(s.Ratio)
			}
		}
		if s := main.PGSink; s != nil {
			r.Scoop["pg_sink_changes_per_s"] = s.PerSec
			if s.CopyRatio > 0 {
				r.PGSinkRatio = f64(s.CopyRatio)
			}
			if s.Limit > 0 {
				r.PGUpsertLimitRatio = f64(s.Ratio)
			}
		}
		if s := main.CassSink; s != nil {
			r.Scoop["cassandra_sink_changes_per_s"] = s.PerSec
			if s.Limit > 0 {
				r.CassandraSinkRatio = f64(s.Ratio)
			}
		}
	}
	r.CPUUSPerChange = map[string]float64{}
	if main != nil && main.Source != nil && main.Source.CPUUSPerChange > 0 {
		src := main.Source.CPUUSPerChange
		r.CPUUSPerChange["source"] = src
		for _, x := range []struct {
			key string
			s   *scoopRate
		}{{"pg_sink", main.PGSink}, {"cassandra_sink", main.CassSink}} {
			switch {
			case x.s != nil && x.s.ProcessUSPerChange > 0:
				// The sink phase drained a filled topic: its process is
				// the sink's CPU; with the fill, the whole path.
				r.CPUUSPerChange[x.key] = x.s.CPUUSPerChange
				r.CPUUSPerChange[x.key+"_process"] = x.s.ProcessUSPerChange
			case x.s != nil && x.s.CPUUSPerChange > 0:
				r.CPUUSPerChange[x.key+"_process"] = x.s.CPUUSPerChange
				r.CPUUSPerChange[x.key] = math.Round((x.s.CPUUSPerChange-src)*100) / 100
			}
		}
	}
	if s := r.Snapshot; s != nil {
		if s.Scoop != nil && s.Scoop.CPUUSPerChange > 0 {
			r.CPUUSPerChange["snapshot"] = s.Scoop.CPUUSPerChange
		}
		if s.CopyTo != nil {
			r.Raw["copy_to_rows_per_s"] = s.CopyTo.PerSec
		}
		if s.ProduceLZ4 != nil {
			r.Raw["snapshot_produce_lz4_rows_per_s"] = s.ProduceLZ4.PerSec
		}
		if s.Scoop != nil && s.Scoop.Limit > 0 {
			r.Raw["snapshot_limit_rows_per_s"] = s.Scoop.Limit
		}
		if s.Scoop != nil {
			r.Scoop["snapshot_rows_per_s"] = s.Scoop.PerSec
			if s.Scoop.Limit > 0 {
				r.SnapshotRatio = f64(s.Scoop.Ratio)
			}
		}
	}
	if l := r.Latency; l != nil && l.Rows > 0 && l.P99 > 0 {
		r.P99CommitToApplyMS = f64(l.P99)
		r.Scoop["latency_rate_rows_per_s"] = l.RateAchieved
	}
	if l := r.LatencyFixed; l != nil && l.Rows > 0 && l.P99 > 0 {
		r.P99At5kMS = f64(l.P99)
		r.Scoop["latency_fixed_rate_rows_per_s"] = l.RateAchieved
	}
	if rv := r.Reverse; rv != nil {
		if rv.Bulk != nil {
			r.Scoop["reverse_rows_per_s"] = rv.Bulk.PerSec
			if rv.Bulk.Limit > 0 {
				r.ReverseRatio = f64(rv.Bulk.Ratio)
			}
		}
		if rv.RawUpsert != nil {
			r.Raw["upsert_rows_per_s"] = rv.RawUpsert.PerSec
		}
		if rv.P99 > 0 {
			r.P99ReverseCommitToApplyMS = f64(rv.P99)
			r.Scoop["reverse_stream_rows_per_s"] = rv.StreamAppliedRate
		}
	}
	var flatRatio *float64
	flatMet := true
	for _, vs := range b.verifyStores() {
		sc := vs.Scoop
		r.Scoop["verify_"+vs.Store+"_rows_per_s"] = sc.PerSec
		if vs.Raw != nil {
			r.Raw["verify_"+vs.Store+"_raw_read_rows_per_s"] = vs.Raw.PerSec
			if vs.Store == "postgres" {
				r.VerifyPGRatio = f64(vs.Ratio)
			} else {
				r.VerifyCassandraRatio = f64(vs.Ratio)
			}
		}
		if r.VerifyPeakHeapMB == nil || sc.PeakHeapMB > *r.VerifyPeakHeapMB {
			r.VerifyPeakHeapMB = f64(sc.PeakHeapMB)
		}
		if sc.Flat != nil && sc.LiveFirstHalfMB > 0 {
			if v := sc.LiveSecondHalfMB / sc.LiveFirstHalfMB; flatRatio == nil || v > *flatRatio {
				flatRatio = f64(v)
			}
			flatMet = flatMet && *sc.Flat
		}
	}
	r.SchemasCPURatio, r.SchemasCPURatioEndToEnd = b.schemasCPURatio(), b.schemasEndToEndRatio()
	if len(r.Phases) > 0 {
		m := 0.0
		for _, p := range r.Phases {
			m = math.Max(m, p.PeakRSSMB)
		}
		r.PeakRSSMB = f64(m)
	}
	// Issue #15's targets.
	add("pg_to_kafka_ratio", r.PGToKafkaRatio, ">= 0.90 of min(raw decode, raw produce)", func(v float64) bool { return v >= 0.9 })
	add("pg_upsert_limit_ratio", r.PGUpsertLimitRatio, ">= 0.60 of the server's own upsert (psql: COPY into staging + INSERT ... ON CONFLICT DO UPDATE)", func(v float64) bool { return v >= 0.6 })
	add("cassandra_sink_ratio", r.CassandraSinkRatio, ">= 0.80 of the plain gocql loop", func(v float64) bool { return v >= 0.8 })
	add("snapshot_ratio", r.SnapshotRatio, ">= 0.85 of min(COPY TO, raw lz4 produce of its records)", func(v float64) bool { return v >= 0.85 })
	add("p99_commit_to_apply_ms", r.P99CommitToApplyMS, "<= 100 ms at half the measured end-to-end PG rate", func(v float64) bool { return v <= 100 })
	add("p99_at_5k_ms", r.P99At5kMS, "<= 50 ms at a fixed 5,000 rows/s", func(v float64) bool { return v <= 50 })
	add("peak_rss_mb", r.PeakRSSMB, "<= 100 MB in every phase", func(v float64) bool { return v <= 100 })
	if b.cfg.verify {
		add("verify_pg_ratio", r.VerifyPGRatio, ">= 0.50 of COPY TO", func(v float64) bool { return v >= 0.5 })
		add("verify_cassandra_ratio", r.VerifyCassandraRatio, ">= 0.50 of a full scan", func(v float64) bool { return v >= 0.5 })
		add("verify_memory_flat", flatRatio, "flat: peak live heap of the verify's second half over its first half <= 1.5x (or within 2 MB)", func(float64) bool { return flatMet })
	}
	add("schemas_cpu_ratio", b.schemasCPURatio(), "<= 1.5x the plain insert's scoop CPU per change from the WAL into PostgreSQL (fill and sink phases)", func(v float64) bool { return v <= 1.5 })
	if r.Errors == nil {
		r.Errors = []string{}
	}
}

// write produces latest.json/md and dated copies (not in smoke mode).
func (b *bench) write() error {
	dir := b.cfg.outDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		return err
	}
	js = append(js, '\n')
	md := []byte(b.markdown())
	files := map[string][]byte{"latest.json": js, "latest.md": md}
	if !b.cfg.smoke {
		stamp := time.Now().UTC().Format("2006-01-02T1504Z")
		files[stamp+".json"], files[stamp+".md"] = js, md
		var text []string
		for _, pr := range b.res.Profiles {
			text = append(text, pr.Text)
		}
		if len(text) > 0 {
			files["latest.cpu.txt"] = []byte(strings.Join(text, "\n\n"))
			files[stamp+".cpu.txt"] = files["latest.cpu.txt"]
		}
		// Each run keeps its profiles too (latest.* is the last run's).
		for _, pr := range b.res.Profiles {
			if data, err := os.ReadFile(pr.File); err == nil {
				files[stamp+strings.TrimPrefix(filepath.Base(pr.File), "latest")] = data
			}
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	logf("results: %s", filepath.Join(dir, "latest.md"))
	return nil
}

func num(v float64) string {
	switch {
	case v == 0:
		return "–"
	case v >= 100:
		return commas(int64(math.Round(v)))
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func pct(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", v*100)
}

func yesNo(t target) string {
	switch {
	case t.Absent:
		return "not measured"
	case t.Met:
		return "met"
	}
	return "**not met**"
}

func (b *bench) markdown() string {
	r := b.res
	var s strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	mode := fmt.Sprintf("%s-row main workload, %s-row snapshot", commas(int64(r.Sizes["insert_rows"])), commas(int64(r.Sizes["snapshot_rows"])))
	if r.Smoke {
		mode = "SMOKE (tiny sizes; numbers mean nothing)"
	}
	p("# scoop benchmark, %s", r.Date)
	p("")
	p("%s; commit %s; %s; load average %s at start, %s at end (the machine is shared: read the ratios, which compare figures measured in the same run); %.0f s in all.", mode, r.Git, r.Host, r.LoadStart, r.LoadEnd, r.TotalSeconds)
	p("")
	var main *workloadResult
	for _, w := range r.Workloads {
		if w.Name == "insert" {
			main = w
		}
	}
	p("## Summary")
	p("")
	if main != nil {
		p("Main workload: %s.", main.Description)
		p("")
	}
	p("| figure | scoop | raw limit | ratio | target | met |")
	p("|---|---|---|---|---|---|")
	tgt := map[string]target{}
	for _, t := range r.Targets {
		tgt[t.Name] = t
	}
	if main != nil {
		if s := main.Source; s != nil {
			limit := fmt.Sprintf("min(decode %s, produce %s; lz4 %s)", rateStr(main.RawDecode), rateStr(main.RawProduce), rateStr(main.RawProduceLZ4))
			p("| PG → Kafka, changes/s | %s | %s | %s | ≥ 90%% | %s |", num(s.PerSec), limit, pct(s.Ratio), yesNo(tgt["pg_to_kafka_ratio"]))
		}
		if s := main.PGSink; s != nil {
			p("| Kafka → PostgreSQL sink (filled topic), changes/s | %s | psql upsert %s rows/s | %s | ≥ 60%% | %s |", num(s.PerSec), rateStr(main.Upsert), pct(s.Ratio), yesNo(tgt["pg_upsert_limit_ratio"]))
			p("| Kafka → PostgreSQL sink (filled topic), changes/s (reference) | %s | COPY into a fresh table %s rows/s | %s | | |", num(s.PerSec), rateStr(main.Copy), pct(s.CopyRatio))
		}
		if s := main.PGEndToEnd; s != nil {
			p("| PG → Kafka → PostgreSQL end to end (one process from the WAL backlog, profiled), changes/s | %s | psql upsert %s rows/s | %s | | |", num(s.PerSec), rateStr(main.Upsert), pct(ratio(s.PerSec, rateOf(main.Upsert))))
		}
		if s := main.CassSink; s != nil {
			p("| Kafka → Cassandra sink (filled topic), changes/s | %s | gocql loop %s rows/s | %s | ≥ 80%% | %s |", num(s.PerSec), rateStr(main.CassLoop), pct(s.Ratio), yesNo(tgt["cassandra_sink_ratio"]))
		}
		if s := main.CassEndToEnd; s != nil {
			p("| PG → Kafka → Cassandra end to end (one process from the WAL backlog, profiled), changes/s | %s | gocql loop %s rows/s | %s | | |", num(s.PerSec), rateStr(main.CassLoop), pct(ratio(s.PerSec, rateOf(main.CassLoop))))
		}
	}
	if sn := r.Snapshot; sn != nil && sn.Scoop != nil {
		p("| snapshot, rows/s (%s rows) | %s | min(COPY TO %s, lz4 produce %s) rows/s | %s | ≥ 85%% | %s |", commas(int64(sn.Rows)), num(sn.Scoop.PerSec), rateStr(sn.CopyTo), rateStr(sn.ProduceLZ4), pct(sn.Scoop.Ratio), yesNo(tgt["snapshot_ratio"]))
	}
	if l := r.Latency; l != nil && l.P99 > 0 {
		p("| commit → apply (PostgreSQL sink) at %s rows/s (half the end-to-end rate) | p50 %.1f / p95 %.1f / **p99 %.1f** ms | | | p99 ≤ 100 ms | %s |", num(l.RateAchieved), l.P50, l.P95, l.P99, yesNo(tgt["p99_commit_to_apply_ms"]))
	}
	if l := r.LatencyFixed; l != nil && l.P99 > 0 {
		p("| commit → apply (PostgreSQL sink) at %s rows/s (fixed) | p50 %.1f / p95 %.1f / **p99 %.1f** ms | | | p99 ≤ 50 ms | %s |", num(l.RateAchieved), l.P50, l.P95, l.P99, yesNo(tgt["p99_at_5k_ms"]))
	}
	if r.PeakRSSMB != nil {
		p("| peak RSS, max over phases | %.1f MB%s | | | ≤ 100 MB in every phase | %s |", *r.PeakRSSMB, overRSS(r.Phases, 100), yesNo(tgt["peak_rss_mb"]))
	}
	if c := r.CPUUSPerChange; len(c) > 0 {
		p("| scoop CPU µs per change: source alone / PG sink / Cassandra sink (the sink's process on its filled topic) / snapshot | %s / %s / %s / %s | | | reported | |", num(c["source"]), num(c["pg_sink"]), num(c["cassandra_sink"]), num(c["snapshot"]))
	}
	if rv := r.Reverse; rv != nil && rv.Bulk != nil {
		p("| service → Kafka → monolith (reverse), rows/s (%s rows, one INSERT) | %s | psql upsert %s rows/s | %s | | |", commas(rv.BulkRows), num(rv.Bulk.PerSec), rateStr(rv.RawUpsert), pct(rv.Bulk.Ratio))
	}
	if rv := r.Reverse; rv != nil && rv.P99 > 0 {
		p("| service commit → monolith (reverse) at %s single-row tx/s | p50 %.1f / p95 %.1f / **p99 %.1f** ms | | | | |", num(rv.StreamRateAchieved), rv.P50, rv.P95, rv.P99)
	}
	for _, vs := range b.verifyStores() {
		name := map[string]string{"postgres": "PostgreSQL", "cassandra": "Cassandra"}[vs.Store]
		raw := "–"
		if vs.Raw != nil {
			raw = fmt.Sprintf("%s %s rows/s", map[string]string{"postgres": "COPY TO", "cassandra": "full scan"}[vs.Store], num(vs.Raw.PerSec))
		}
		p("| verify (clean), %s target, rows/s (%s rows; peak heap %.1f MB) | %s | %s | %s | ≥ 50%% | %s |", name, commas(vs.Scoop.Rows), vs.Scoop.PeakHeapMB,
			num(vs.Scoop.PerSec), raw, pct(vs.Ratio), yesNo(tgt["verify_"+map[string]string{"postgres": "pg", "cassandra": "cassandra"}[vs.Store]+"_ratio"]))
	}
	if v := b.schemasCPURatio(); v != nil {
		p("| scoop CPU per change from the WAL into PostgreSQL (fill + sink phases), schemas / plain | %.2fx | | | ≤ 1.5x | %s |", *v, yesNo(tgt["schemas_cpu_ratio"]))
	}
	if v := b.schemasEndToEndRatio(); v != nil {
		p("| the same, end to end in one process (the profiled runs), schemas / plain | %.2fx | | | | |", *v)
	}
	if t, ok := tgt["verify_memory_flat"]; ok && !t.Absent {
		p("| verify memory: peak live heap, second half of the run / first half (max over targets) | %.2fx | | | flat (≤ 1.5x or 2 MB) | %s |", t.Value, yesNo(t))
	}
	p("")
	p("## Workloads")
	p("")
	p("Rates in changes/s (psql upsert, COPY and gocql loop: rows/s); the ratio is scoop's rate over its raw limit (source: min(raw decode, the faster raw produce); PG sink: the psql upsert, and over COPY into a fresh table as a reference). µs: scoop's process CPU per change (a sink's: on its filled topic, source idle).")
	p("")
	p("| workload | changes | WAL MB | event B | raw decode | raw produce | raw produce lz4 | scoop source | ratio | µs | psql upsert | COPY | PG sink | ratio | / COPY | µs | gocql loop | Cassandra sink | ratio | µs |")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, w := range r.Workloads {
		p("| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", w.Name, commas(int64(w.Changes)), w.WALMB, num(w.EventBytes),
			rateStr(w.RawDecode), rateStr(w.RawProduce), rateStr(w.RawProduceLZ4), srate(w.Source), sratio(w.Source), sus(w.Source),
			rateStr(w.Upsert), rateStr(w.Copy), srate(w.PGSink), sratio(w.PGSink), scopy(w.PGSink), sus(w.PGSink),
			rateStr(w.CassLoop), srate(w.CassSink), sratio(w.CassSink), sus(w.CassSink))
	}
	p("")
	for _, w := range r.Workloads {
		p("- **%s**: %s.%s", w.Name, w.Description, wallNote(w))
	}
	p("")
	p("## Peak RSS and CPU per scoop process")
	p("")
	p("Peak RSS is VmHWM (target ≤ 100 MB in every phase). scoop µs/change: scoop's process CPU over the phase's row changes. CPU in seconds over the phase: scoop; the PostgreSQL backends serving it (walsender; sessions in the service database: the sink's); the Kafka and Cassandra servers (shared with other work on the machine); all CPUs of the machine, busy of capacity.")
	p("")
	p("| phase | seconds | changes | peak RSS MB | scoop µs/change | scoop CPU | walsender | PG sink session | Kafka | Cassandra | machine busy |")
	p("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, ph := range r.Phases {
		c := ph.CPU
		machine := "–"
		if c["machine_capacity"] > 0 {
			machine = fmt.Sprintf("%.1f of %.1f", c["machine_busy"], c["machine_capacity"])
		}
		rss := fmt.Sprintf("%.1f", ph.PeakRSSMB)
		if ph.PeakRSSMB > 100 {
			rss = "**" + rss + "**"
		}
		p("| %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %s |", ph.Phase, ph.Seconds, commas(int64(ph.Changes)), rss, num(ph.CPUUSPerChange), cpuStr(c, "scoop"), cpuStr(c, "pg_walsender"),
			cpuStr(c, "pg_backends_service"), cpuStr(c, "kafka"), cpuStr(c, "cassandra"), machine)
	}
	p("")
	if r.Latency != nil || r.LatencyFixed != nil {
		p("## Commit-to-apply latency")
		p("")
		for _, l := range []*latencyResult{r.Latency, r.LatencyFixed} {
			if l == nil {
				continue
			}
			p("- Target rate %s rows/s (%s), achieved %s rows/s over %.0f s (started once the machine was quiet: %.1f s wait, %.0f%% busy): %d rows in %d transactions. Monolith commit → row inserted by the sink (applied_at): p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms. Peak RSS %.1f MB; scoop CPU %s µs per change.",
				num(l.RateTarget), l.RateBasis, num(l.RateAchieved), l.Seconds, l.SettleSeconds, l.BusyAtStart*100, l.Rows, l.Transactions, l.P50, l.P95, l.P99, l.Max, l.PeakRSSMB, num(l.CPUUSPerChange))
			if l.Source != nil && l.Sink != nil {
				p("  Where it goes (when each record was in Kafka: the topic's end offsets, sampled every 10 ms, 100 requests/s to the broker): commit → in Kafka (source: decode, encode, produce) p50 %.1f / p95 %.1f / p99 %.1f / max %.1f ms; in Kafka → applied (sink: fetch, decode, apply) p50 %.1f / p95 %.1f / p99 %.1f / max %.1f ms.",
					l.Source.P50, l.Source.P95, l.Source.P99, l.Source.Max, l.Sink.P50, l.Sink.P95, l.Sink.P99, l.Sink.Max)
			}
		}
		p("")
	}
	if sn := r.Snapshot; sn != nil {
		p("## Snapshot")
		p("")
		p("%s rows of %s bytes a record: COPY TO %s rows/s; Kafka's producer on scoop's snapshot records (lz4) %s rows/s; scoop %s rows/s steady (%s of the limit, %s of COPY TO alone), peak RSS %.1f MB, scoop CPU %s µs per row.",
			commas(int64(sn.Rows)), num(sn.EventBytes), rateStr(sn.CopyTo), rateStr(sn.ProduceLZ4), srate(sn.Scoop), sratio(sn.Scoop), pct(sn.CopyToRatio), snapRSS(sn), sus(sn.Scoop))
		p("")
	}
	if rv := r.Reverse; rv != nil {
		p("## Reverse path: PostgreSQL service → monolith")
		p("")
		if rv.Bulk != nil {
			p("Bulk: %s rows in one service transaction reached the monolith in %.2f s after its commit (first row after %.2f s): %s rows/s steady, %s rows/s wall; raw psql upsert %s rows/s; ratio %s. Check: %s.",
				commas(rv.BulkRows), rv.Bulk.Seconds, rv.Bulk.FirstProgress, num(rv.Bulk.PerSec), num(rv.Bulk.WallPerSec), rateStr(rv.RawUpsert), pct(rv.Bulk.Ratio), rv.BulkCheck)
		}
		if rv.StreamRows > 0 {
			p("Stream: %d single-row transactions in %.0f s (target %s/s, achieved %s/s), applied at %s rows/s; service commit → monolith insert: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms. Peak RSS %.1f MB.",
				rv.StreamRows, rv.StreamSeconds, num(rv.StreamRateTarget), num(rv.StreamRateAchieved), num(rv.StreamAppliedRate), rv.P50, rv.P95, rv.P99, rv.Max, rv.PeakRSSMB)
		}
		p("")
	}
	if vr := r.Verify; vr != nil {
		p("## verify: a clean comparison")
		p("")
		p("A clean `scoop verify` (verify.Run in the bench process) of a %s-row table per store kind, next to the raw read of that table (the faster of two). Heap: Go heap in use, sampled every 25 ms, before the run (after a GC) and its peak; the live heap (what the last GC kept) at its peak in each half of the run, which shows whether memory grows with the rows compared; RSS: the bench process's VmHWM, reset before the run, next to its resident set then.", commas(int64(vr.Rows)))
		p("")
		p("| target | rows | verify s | verify rows/s | raw read | raw rows/s | ratio | heap in use base / peak MB | peak live heap 1st / 2nd half MB | memory | RSS base / peak MB |")
		p("|---|---|---|---|---|---|---|---|---|---|---|")
		for _, vs := range vr.Stores {
			raw, rawRate := "failed", "–"
			if vs.Raw != nil {
				raw, rawRate = vs.Raw.Detail, num(vs.Raw.PerSec)
			}
			if sc := vs.Scoop; sc != nil {
				p("| %s | %s | %.2f | %s | %s | %s | %s | %.1f / %.1f | %.1f / %.1f | %s | %.1f / %.1f |", vs.Store, commas(sc.Rows), sc.Seconds, num(sc.PerSec), raw, rawRate, pct(vs.Ratio),
					sc.BaseHeapMB, sc.PeakHeapMB, sc.LiveFirstHalfMB, sc.LiveSecondHalfMB, flatStr(sc.Flat), sc.BaseRSSMB, sc.PeakRSSMB)
			} else {
				p("| %s | – | – | failed | %s | %s | – | | | | |", vs.Store, raw, rawRate)
			}
		}
		p("")
	}
	for _, pr := range r.Profiles {
		p("## CPU profile: scoop run, %s", pr.Label)
		p("")
		p("%d s of `/debug/pprof/profile` while the process drained its backlog in %.1f s (`go tool pprof -top %s`; every profile, flat and cumulative, in latest.cpu.txt).", pr.Seconds, pr.DrainSeconds, filepath.Join("bench", "results", filepath.Base(pr.File)))
		p("")
		p("```")
		p("      flat  flat%%   sum%%        cum   cum%%")
		for _, l := range pr.Top {
			p("%s", l)
		}
		p("--- by cumulative time (runtime frames left out) ---")
		for _, l := range pr.TopCum {
			p("%s", l)
		}
		p("```")
		p("")
	}
	if len(r.Errors) > 0 {
		p("## Errors")
		p("")
		for _, e := range r.Errors {
			p("- %s", strings.ReplaceAll(e, "\n", " "))
		}
		p("")
	}
	p("## Method")
	p("")
	for _, m := range r.Method {
		p("- %s", m)
	}
	return s.String()
}

func cpuStr(c map[string]float64, k string) string {
	if v, ok := c[k]; ok {
		return fmt.Sprintf("%.2f", v)
	}
	return "–"
}

func rateOf(r *rate) float64 {
	if r == nil {
		return 0
	}
	return r.PerSec
}

func rateStr(r *rate) string {
	if r == nil {
		return "–"
	}
	return num(r.PerSec)
}

func sus(r *scoopRate) string {
	if r == nil {
		return "–"
	}
	return num(r.CPUUSPerChange)
}

func scopy(r *scoopRate) string {
	if r == nil {
		return "–"
	}
	return pct(r.CopyRatio)
}

func snapRSS(sn *snapshotResult) float64 {
	if sn.Scoop == nil {
		return 0
	}
	return sn.Scoop.PeakRSSMB
}

// overRSS names the phases whose peak RSS is over limit MB.
func overRSS(phases []phaseRSS, limit float64) string {
	var over []string
	for _, ph := range phases {
		if ph.PeakRSSMB > limit {
			over = append(over, fmt.Sprintf("%s %.0f", ph.Phase, ph.PeakRSSMB))
		}
	}
	if len(over) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d of %d phases over %.0f MB: %s)", len(over), len(phases), limit, strings.Join(over, ", "))
}

func srate(r *scoopRate) string {
	if r == nil {
		return "–"
	}
	return num(r.PerSec)
}

func sratio(r *scoopRate) string {
	if r == nil {
		return "–"
	}
	return pct(r.Ratio)
}

func wallNote(w *workloadResult) string {
	var parts []string
	for _, x := range []struct {
		name string
		r    *scoopRate
	}{{"source", w.Source}, {"PG sink", w.PGSink}, {"Cassandra sink", w.CassSink}} {
		if x.r != nil {
			note := ""
			if !x.r.Steady {
				note = ", too fast for a steady rate: the wall rate is used"
			}
			parts = append(parts, fmt.Sprintf("%s %.1f s (%s/s incl. start-up, first progress after %.1f s%s)", x.name, x.r.Seconds, num(x.r.WallPerSec), x.r.FirstProgress, note))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " Wall: " + strings.Join(parts, "; ") + "."
}

// schemasCPURatio is scoop's CPU per change from the WAL into PostgreSQL
// (the fill and the sink phase) of the schemas workload over the insert
// workload's (nil when either is missing).
func (b *bench) schemasCPURatio() *float64 {
	return b.schemasRatio(func(w *workloadResult) float64 {
		if w.PGSink == nil {
			return 0
		}
		return w.PGSink.ProcessUSPerChange
	})
}

// schemasEndToEndRatio is schemasCPURatio for the profiled end-to-end runs
// (source and sink in one process).
func (b *bench) schemasEndToEndRatio() *float64 {
	return b.schemasRatio(func(w *workloadResult) float64 {
		if w.PGEndToEnd == nil {
			return 0
		}
		return w.PGEndToEnd.CPUUSPerChange
	})
}

// schemasRatio is perChange of the schemas workload over the insert
// workload's (nil when either is missing or zero).
func (b *bench) schemasRatio(perChange func(*workloadResult) float64) *float64 {
	of := func(name string) float64 {
		for _, w := range b.res.Workloads {
			if w.Name == name {
				return perChange(w)
			}
		}
		return 0
	}
	plain, schemas := of("insert"), of("schemas")
	if plain <= 0 || schemas <= 0 {
		return nil
	}
	return f64(schemas / plain)
}

// verifyStores are the store kinds whose clean verify was measured.
func (b *bench) verifyStores() []*verifyStore {
	var out []*verifyStore
	if b.res.Verify != nil {
		for _, vs := range b.res.Verify.Stores {
			if vs.Scoop != nil {
				out = append(out, vs)
			}
		}
	}
	return out
}

func flatStr(flat *bool) string {
	switch {
	case flat == nil:
		return "memory not judged (run too short)"
	case *flat:
		return "memory flat"
	}
	return "**memory not flat**"
}
