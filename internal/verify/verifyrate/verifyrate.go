// Package verifyrate measures a clean verify against the raw read rate of the
// same table, and the memory the verify takes. TestVerifyRate
// (internal/verify) and the verify phase of the benchmark (bench/) share it.
//
// The measured table has the same rows in the monolith and in the target:
// a PostgreSQL table of the same columns, or a Cassandra table of the types
// scoop's sink creates for them. The raw read rates are COPY TO of the
// monolith table and a plain full scan (token order, pages of 5,000) of the
// Cassandra table.
package verifyrate

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
	"gopkg.in/inf.v0"

	"github.com/scoop-cdc/scoop/internal/verify"
	"github.com/scoop-cdc/scoop/schema"
)

// Columns are the measured table's columns, in the monolith and in a
// PostgreSQL target.
const Columns = `id bigint PRIMARY KEY, amount numeric(12,2), note text, at timestamptz`

// CQLColumns are the same columns in the types scoop's Cassandra sink
// creates for them.
const CQLColumns = `id bigint, amount decimal, note text, at timestamp, PRIMARY KEY ((id))`

// CreateSource creates table (public schema) in the monolith with ids 1..n,
// in one statement, and analyses it (verify sizes its progress from the
// planner's estimate).
func CreateSource(ctx context.Context, mono *pgx.Conn, table string, n int) error {
	q := schema.QuoteIdent(table)
	for _, sql := range []string{
		fmt.Sprintf(`CREATE TABLE %s (%s)`, q, Columns),
		fmt.Sprintf(`INSERT INTO %s SELECT g, g * 1.5, 'note ' || g, '2026-01-01'::timestamptz + g * interval '1 ms' FROM generate_series(1, %d) g`, q, n),
		"VACUUM ANALYZE " + q,
	} {
		if _, err := mono.Exec(ctx, sql); err != nil {
			return fmt.Errorf("monolith table %s: %w", table, err)
		}
	}
	return nil
}

// CopyToPostgres creates table in the PostgreSQL target and copies the
// monolith's rows into it (COPY TO piped into COPY FROM).
func CopyToPostgres(ctx context.Context, mono, svc *pgx.Conn, table string) error {
	q := schema.QuoteIdent(table)
	if _, err := svc.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (%s)`, q, Columns)); err != nil {
		return fmt.Errorf("target table %s: %w", table, err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := mono.PgConn().CopyTo(ctx, pw, "COPY "+q+" TO STDOUT")
		pw.CloseWithError(err)
	}()
	if _, err := svc.PgConn().CopyFrom(ctx, pr, "COPY "+q+" FROM STDIN"); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("copy %s into the target: %w", table, err)
	}
	if _, err := svc.Exec(ctx, "VACUUM ANALYZE "+q); err != nil {
		return fmt.Errorf("target table %s: %w", table, err)
	}
	return nil
}

// CopyToCassandra creates keyspace.table (the keyspace must exist) and
// writes the monolith's rows into it, 128 writes in flight.
func CopyToCassandra(ctx context.Context, mono *pgx.Conn, s *gocql.Session, keyspace, table string) error {
	ct := schema.QuoteIdent(keyspace) + "." + schema.QuoteIdent(table)
	if err := s.Query("CREATE TABLE " + ct + " (" + CQLColumns + ")").WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("cassandra table %s: %w", ct, err)
	}
	rows, err := mono.Query(ctx, "SELECT id, amount::text, note, at FROM "+schema.QuoteIdent(table))
	if err != nil {
		return fmt.Errorf("read the monolith table %s: %w", table, err)
	}
	defer rows.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(128)
	insert := "INSERT INTO " + ct + " (id, amount, note, at) VALUES (?, ?, ?, ?)"
	for rows.Next() && gctx.Err() == nil {
		var id int64
		var amount, note string
		var at time.Time
		if err := rows.Scan(&id, &amount, &note, &at); err != nil {
			return fmt.Errorf("read the monolith table %s: %w", table, err)
		}
		dec, ok := new(inf.Dec).SetString(amount)
		if !ok {
			return fmt.Errorf("read the monolith table %s: amount %q of id %d is not a decimal", table, amount, id)
		}
		g.Go(func() error {
			return s.Query(insert, id, dec, note, at).WithContext(gctx).Exec()
		})
	}
	rows.Close()
	werr := g.Wait()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the monolith table %s: %w", table, err)
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", ct, werr)
	}
	return ctx.Err()
}

// Raw is a raw read of the whole table.
type Raw struct {
	Rows    int64   `json:"rows"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_s"`
	Detail  string  `json:"detail"`
}

// CopyTo times COPY table TO STDOUT into nowhere: the raw read rate of a
// PostgreSQL table.
func CopyTo(ctx context.Context, conn *pgx.Conn, table string) (Raw, error) {
	start := time.Now()
	tag, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY "+schema.QuoteIdent(table)+" TO STDOUT")
	if err != nil {
		return Raw{}, fmt.Errorf("COPY %s TO STDOUT: %w", table, err)
	}
	secs := time.Since(start).Seconds()
	return Raw{Rows: tag.RowsAffected(), Seconds: secs, PerSec: float64(tag.RowsAffected()) / secs, Detail: "COPY TO STDOUT"}, nil
}

// Scan times a plain full scan of keyspace.table (every column, token
// order, pages of 5,000 as verify reads it): the raw read rate of a
// Cassandra table.
func Scan(ctx context.Context, s *gocql.Session, keyspace, table string) (Raw, error) {
	ct := schema.QuoteIdent(keyspace) + "." + schema.QuoteIdent(table)
	start := time.Now()
	iter := s.Query("SELECT id, amount, note, at FROM " + ct).WithContext(ctx).PageSize(5000).Iter()
	var n int64
	var id int64
	var amount *inf.Dec
	var note string
	var at time.Time
	for iter.Scan(&id, &amount, &note, &at) {
		n++
	}
	if err := iter.Close(); err != nil {
		return Raw{}, fmt.Errorf("scan %s: %w", ct, err)
	}
	secs := time.Since(start).Seconds()
	return Raw{Rows: n, Seconds: secs, PerSec: float64(n) / secs, Detail: "SELECT id, amount, note, at (full token range, pages of 5,000)"}, nil
}

// Result is one clean verify and the memory it took.
type Result struct {
	Rows    int64   `json:"rows"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_s"`
	// Heap in use (runtime.MemStats.HeapInuse) before the run, after a GC,
	// and its peak during the run (sampled every SampleEvery).
	BaseHeapMB float64 `json:"base_heap_mb"`
	PeakHeapMB float64 `json:"peak_heap_mb"`
	// The live heap (what the last GC kept, /gc/heap/live:bytes), its peak
	// in each half of the run: a verify that keeps something per row
	// compared peaks higher in the second half. (The heap in use also
	// follows the collector's pacing, up to twice the live heap.)
	LiveFirstHalfMB  float64 `json:"peak_live_heap_first_half_mb"`
	LiveSecondHalfMB float64 `json:"peak_live_heap_second_half_mb"`
	Samples          int     `json:"heap_samples"`
	// Resident set of the measuring process before the run (after returning
	// freed memory to the system) and its peak during the run (VmHWM, reset
	// before the run); 0 when /proc cannot tell.
	BaseRSSMB float64 `json:"base_rss_mb"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// Flat is nil when the run was too short to judge (fewer than
	// MinSamples samples in a half).
	Flat *bool `json:"memory_flat"`
}

// How memory is sampled, and when it counts as flat: the second half's peak
// live heap within FlatFactor of the first half's, or within FlatSlackMB of
// it (a few MB of noise on a small heap).
const (
	SampleEvery = 25 * time.Millisecond
	MinSamples  = 8
	FlatFactor  = 1.5
	FlatSlackMB = 2.0
)

// Measure runs verify.Run on a clean pair and samples the memory of this
// process while it runs; an error unless the pair is equal with wantRows
// rows.
func Measure(ctx context.Context, cfg verify.Config, wantRows int64) (*Result, error) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res := &Result{BaseHeapMB: mb(ms.HeapInuse)}
	// Writing 5 to clear_refs resets VmHWM to the current resident set.
	rssOK := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	if rssOK {
		res.BaseRSSMB = procStatusMB("VmRSS")
	}
	var samples []sample
	var mu sync.Mutex
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		t := time.NewTicker(SampleEvery)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			metrics.Read(live)
			var l uint64
			if live[0].Value.Kind() == metrics.KindUint64 {
				l = live[0].Value.Uint64()
			}
			mu.Lock()
			samples = append(samples, sample{at: time.Now(), heap: ms.HeapInuse, live: l})
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	start := time.Now()
	rep, err := verify.Run(ctx, cfg)
	end := time.Now()
	close(done)
	<-sampled
	if err != nil {
		return nil, err
	}
	if !rep.Equal() || rep.Rows != wantRows || len(rep.Unsettled) > 0 {
		return nil, fmt.Errorf("verify %s: not a clean pair of %d rows: %d source rows, %d missing, %d extra, %d different, %d unsettled",
			cfg.Mapping.Name, wantRows, rep.Rows, rep.Missing, rep.Extra, rep.Different, len(rep.Unsettled))
	}
	res.Rows, res.Seconds = rep.Rows, rep.Seconds
	res.PerSec = float64(rep.Rows) / rep.Seconds
	if rssOK {
		res.PeakRSSMB = procStatusMB("VmHWM")
	}
	res.judge(samples, start, end)
	return res, nil
}

// sample is the heap in use and the live heap at a moment of the run.
type sample struct {
	at         time.Time
	heap, live uint64
}

// judge fills the peak heap in use, the live heap's peak in each half of
// the run from start to end, and whether they show flat memory.
func (res *Result) judge(samples []sample, start, end time.Time) {
	mid := start.Add(end.Sub(start) / 2)
	var first, second uint64
	var n1, n2 int
	for _, s := range samples {
		res.PeakHeapMB = max(res.PeakHeapMB, mb(s.heap))
		if s.at.Before(mid) {
			first, n1 = max(first, s.live), n1+1
		} else {
			second, n2 = max(second, s.live), n2+1
		}
	}
	res.Samples = len(samples)
	res.LiveFirstHalfMB, res.LiveSecondHalfMB = mb(first), mb(second)
	res.Flat = nil
	if n1 >= MinSamples && n2 >= MinSamples {
		flat := res.LiveSecondHalfMB <= res.LiveFirstHalfMB*FlatFactor || res.LiveSecondHalfMB-res.LiveFirstHalfMB <= FlatSlackMB
		res.Flat = &flat
	}
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// procStatusMB reads a kB field of /proc/self/status (0 when absent).
func procStatusMB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
