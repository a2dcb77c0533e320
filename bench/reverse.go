package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// reverseResult is the phase "reverse": a mapping with direction: both into
// the service PostgreSQL database, and the service's writes travelling back
// (reverse slot in the service database -> reverse topic -> the monolith,
// under last-writer-wins).
type reverseResult struct {
	// Bulk: one INSERT ... SELECT of BulkRows rows into the service table;
	// rows/s applied into the monolith (steady: first row seen in the
	// monolith -> last; wall: from the service's commit).
	BulkRows  int64      `json:"bulk_rows"`
	Bulk      *scoopRate `json:"scoop_bulk,omitempty"`
	BulkCheck string     `json:"bulk_check,omitempty"`
	// RawUpsert: the same rows through psql, INSERT ... VALUES (1,000 rows a
	// statement) ... ON CONFLICT (id) DO UPDATE into a monolith table of the
	// same columns.
	RawUpsert *rate `json:"raw_upsert,omitempty"`
	// Stream: single-row transactions into the service table at a fixed
	// rate; per row, the service commit (pg_xact_commit_timestamp) to the
	// row's insert in the monolith (applied_at, DEFAULT clock_timestamp()).
	StreamRateTarget   float64 `json:"stream_rate_target_rows_per_s"`
	StreamRateAchieved float64 `json:"stream_rate_achieved_rows_per_s"`
	StreamSeconds      float64 `json:"stream_seconds"`
	StreamRows         int64   `json:"stream_rows"`
	StreamAppliedRate  float64 `json:"stream_applied_rows_per_s"` // rows / (first service commit -> last monolith apply)
	P50                float64 `json:"p50_ms"`
	P95                float64 `json:"p95_ms"`
	P99                float64 `json:"p99_ms"`
	Max                float64 `json:"max_ms"`
	PeakRSSMB          float64 `json:"peak_rss_mb"`
}

// runReverse measures the PostgreSQL service -> monolith path with one live
// scoop process (forward source and sink, reverse source and sink).
func (b *bench) runReverse(ctx context.Context) {
	rr := &reverseResult{BulkRows: int64(b.cfg.reverseRows), StreamRateTarget: b.cfg.reverseRate, StreamSeconds: b.cfg.latencySecs}
	b.res.Reverse = rr
	logf("=== reverse: %d service rows in one INSERT ... SELECT, then %.0f single-row transactions/s for %.0fs", rr.BulkRows, rr.StreamRateTarget, rr.StreamSeconds)
	name := b.id + "_rev"
	mono := schema.QuoteIdent(name)
	b.add(&b.monoTables, mono)
	if _, err := b.mono.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (%s, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())`, mono, tableColumns)); err != nil {
		b.fail("reverse: create table", err)
		return
	}
	r := b.newRole("rev", "pg", name)
	// applied_at stays in the monolith: the reverse sink's inserts fill it.
	r.mappingExtra = "    direction: both\n    columns: {exclude: [applied_at]}\n"
	svc := schema.QuoteIdent(r.target)
	b.add(&b.svcTables, svc) // scoop's forward sink creates it
	revTopic := r.prefix + ".reverse.m-" + r.name
	b.add(&b.topics, revTopic)
	b.add(&b.groups, r.group+".reverse")
	revSlot := r.slot + "_rev_svc" // <SCOOP_SLOT>_rev_<store>, docs/reverse.md
	b.add(&b.slots, revSlot)       // scoop's lease rows for it are in the monolith
	if err := b.createTopics(ctx, r.topic, r.dlq, revTopic); err != nil {
		b.fail("reverse: topics", err)
		return
	}
	defer b.dropSlot(r.slot)
	defer b.dropReverseState(revSlot, name, r.target)
	meter := b.startCPU()
	p, err := b.startScoop("reverse", r)
	if err != nil {
		b.fail("reverse: start scoop", err)
		return
	}
	defer b.stopProc(p)
	// The reverse slot is created without a snapshot when the reverse
	// source starts (after the forward sink created the service table):
	// service writes before it would never be captured.
	if _, err := waitCount(ctx, p, p.start, 1, 2*time.Minute, 50*time.Millisecond, func(c context.Context) (int64, error) {
		var n int64
		err := b.svc.QueryRow(c, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, revSlot).Scan(&n)
		return n, err
	}); err != nil {
		b.fail("reverse: reverse slot not created", err)
		return
	}
	monoCount := func(c context.Context) (int64, error) {
		var n int64
		err := b.mono.QueryRow(c, `SELECT count(*) FROM `+mono).Scan(&n)
		return n, err
	}
	const warm = 10
	if _, err := b.svc.Exec(ctx, insertSQL(svc, 1, warm, 0)); err != nil {
		b.fail("reverse: warm-up", err)
		return
	}
	if _, err := waitCount(ctx, p, time.Now(), warm, 2*time.Minute, 50*time.Millisecond, monoCount); err != nil {
		b.fail("reverse: warm-up rows not applied into the monolith", err)
		return
	}

	// Bulk: one statement, one transaction.
	lo, hi := int64(warm+1), int64(warm)+rr.BulkRows
	if _, err := b.svc.Exec(ctx, insertSQL(svc, lo, hi, 0)); err != nil {
		b.fail("reverse: bulk insert", err)
		return
	}
	committed := time.Now()
	g, err := waitCount(ctx, p, committed, hi, phaseTimeout(int(rr.BulkRows)), 25*time.Millisecond, monoCount)
	if err != nil {
		b.fail("reverse: bulk rows not applied into the monolith", err)
		return
	}
	steady, ok := g.steadyRate(float64(rr.BulkRows), 1)
	rr.Bulk = &scoopRate{Seconds: g.wall(), PerSec: steady, Steady: ok, WallPerSec: float64(rr.BulkRows) / g.wall(), FirstProgress: g.first.Sub(g.start).Seconds()}
	sum := `SELECT count(*), coalesce(sum(k), 0), coalesce(sum(amount), 0)::text, coalesce(sum(length(name)), 0) FROM %s WHERE id BETWEEN $1 AND $2`
	var want, got [4]any
	var wn, gn, wk, gk, wl, gl int64
	var wa, ga string
	want, got = [4]any{&wn, &wk, &wa, &wl}, [4]any{&gn, &gk, &ga, &gl}
	if err := b.svc.QueryRow(ctx, fmt.Sprintf(sum, svc), lo, hi).Scan(want[:]...); err != nil {
		b.fail("reverse: check", err)
	} else if err := b.mono.QueryRow(ctx, fmt.Sprintf(sum, mono), lo, hi).Scan(got[:]...); err != nil {
		b.fail("reverse: check", err)
	} else if rr.BulkCheck = fmt.Sprintf("rows=%d sum(k)=%d sum(amount)=%s name_bytes=%d", gn, gk, ga, gl); wn != gn || wk != gk || wa != ga || wl != gl {
		b.fail("reverse: check", fmt.Errorf("monolith %s, service rows=%d sum(k)=%d sum(amount)=%s name_bytes=%d", rr.BulkCheck, wn, wk, wa, wl))
	}
	logf("reverse: bulk of %d rows applied into the monolith in %.2fs after the service commit (first row after %.2fs): %.0f rows/s steady, %.0f rows/s wall",
		rr.BulkRows, rr.Bulk.Seconds, rr.Bulk.FirstProgress, rr.Bulk.PerSec, rr.Bulk.WallPerSec)

	// Stream: single-row transactions at a fixed rate.
	first := hi + 1
	next, written := b.reverseStream(ctx, svc, first)
	rr.StreamRows = written
	if written == 0 {
		b.fail("reverse: stream", errors.New("no rows written"))
		return
	}
	rr.StreamRateAchieved = float64(written) / rr.StreamSeconds
	if _, err := waitCount(ctx, p, time.Now(), next-1, 2*time.Minute, 50*time.Millisecond, monoCount); err != nil {
		b.fail("reverse: stream rows not applied into the monolith", err)
		return
	}
	cpu := meter.stop(ctx, b, p)
	rr.PeakRSSMB = p.peakRSSMB()
	rr.Bulk.PeakRSSMB = rr.PeakRSSMB // CPU: the phase's, in peak_rss_by_phase
	b.res.Phases = append(b.res.Phases, phaseRSS{Phase: "reverse (live: source, PG sink, reverse source, reverse sink)", PeakRSSMB: rr.PeakRSSMB, Seconds: time.Since(p.start).Seconds(), CPU: cpu})
	if n, err := b.topicCount(ctx, r.dlq); err == nil && n > 0 {
		b.fail("reverse", fmt.Errorf("%d dead letters in %s", n, r.dlq))
	}
	if err := b.reverseLatency(ctx, rr, svc, mono, first, next-1); err != nil {
		b.fail("reverse: latency", err)
		return
	}
	logf("reverse: stream of %d single-row transactions at %.0f/s: applied %.0f rows/s; service commit -> monolith p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms; peak RSS %.1f MB",
		written, rr.StreamRateAchieved, rr.StreamAppliedRate, rr.P50, rr.P95, rr.P99, rr.Max, rr.PeakRSSMB)

	// The raw limit, last (no scoop process competes): the same rows
	// upserted into the monolith by psql.
	b.stopProc(p)
	if rows, secs, err := b.rawUpsert(ctx, svc, lo, hi, b.id+"_rev_raw"); err != nil {
		b.fail("reverse: raw upsert", err)
	} else {
		rr.RawUpsert = &rate{Seconds: secs, PerSec: float64(rows) / secs, Rows: rows, Detail: "psql -f, INSERT ... VALUES of 1,000 rows ... ON CONFLICT (id) DO UPDATE, one transaction a statement"}
		rr.Bulk.Limit = rr.RawUpsert.PerSec
		rr.Bulk.Ratio = ratio(rr.Bulk.PerSec, rr.Bulk.Limit)
		logf("reverse: raw psql upsert of %d rows in %.2fs: %.0f rows/s; scoop's reverse path %.0f%% of it", rows, secs, rr.RawUpsert.PerSec, rr.Bulk.Ratio*100)
	}
}

// reverseStream writes single-row transactions into the service table at
// the configured rate for the configured time; it returns the next id and
// the number written.
func (b *bench) reverseStream(ctx context.Context, svc string, first int64) (next, written int64) {
	conn, err := b.svc.Acquire(ctx)
	if err != nil {
		b.fail("reverse: connect", err)
		return first, 0
	}
	defer conn.Release()
	next = first
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		<-tick.C
		el := time.Since(start).Seconds()
		if el >= b.cfg.latencySecs || ctx.Err() != nil {
			break
		}
		due := first + int64(b.cfg.reverseRate*el)
		for ; next < due && time.Since(start).Seconds() < b.cfg.latencySecs; next++ {
			if _, err := conn.Exec(ctx, insertSQL(svc, next, next, 0)); err != nil {
				b.fail("reverse: stream write", err)
				return next, next - first
			}
		}
	}
	return next, next - first
}

// reverseLatency reads, per stream row, the service commit time and the
// monolith insert time.
func (b *bench) reverseLatency(ctx context.Context, rr *reverseResult, svc, mono string, lo, hi int64) error {
	commits := map[int64]time.Time{}
	rows, err := b.svc.Query(ctx, `SELECT id, pg_xact_commit_timestamp(xmin) FROM `+svc+` WHERE id BETWEEN $1 AND $2`, lo, hi)
	if err != nil {
		return err
	}
	var firstCommit, lastApplied time.Time
	for rows.Next() {
		var id int64
		var t time.Time
		if err := rows.Scan(&id, &t); err != nil {
			rows.Close()
			return err
		}
		commits[id] = t
		if firstCommit.IsZero() || t.Before(firstCommit) {
			firstCommit = t
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var ms []float64
	rows, err = b.mono.Query(ctx, `SELECT id, applied_at FROM `+mono+` WHERE id BETWEEN $1 AND $2`, lo, hi)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		var a time.Time
		if err := rows.Scan(&id, &a); err != nil {
			rows.Close()
			return err
		}
		if c, ok := commits[id]; ok {
			ms = append(ms, a.Sub(c).Seconds()*1000)
		}
		if a.After(lastApplied) {
			lastApplied = a
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if int64(len(ms)) != hi-lo+1 {
		return fmt.Errorf("%d of the %d stream rows are in both tables", len(ms), hi-lo+1)
	}
	rr.P50, rr.P95, rr.P99, rr.Max = percentiles(ms)
	if span := lastApplied.Sub(firstCommit).Seconds(); span > 0 {
		rr.StreamAppliedRate = float64(len(ms)) / span
	}
	return nil
}

// rawUpsert writes the service rows lo..hi into a new monolith table of the
// same columns with psql: INSERT ... VALUES of 1,000 rows ... ON CONFLICT
// (id) DO UPDATE, each statement its own transaction (as scoop's reverse
// sink commits batches). The script is built before the clock starts.
func (b *bench) rawUpsert(ctx context.Context, svc string, lo, hi int64, table string) (int64, float64, error) {
	quoted := schema.QuoteIdent(table)
	b.add(&b.monoTables, quoted)
	if _, err := b.mono.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (%s, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())`, quoted, tableColumns)); err != nil {
		return 0, 0, err
	}
	rows, err := b.svc.Query(ctx, `SELECT format('(%s, %s, %s, %L, %L, %L, %L)', id, k, v, name, amount, created_at, body) FROM `+svc+` WHERE id BETWEEN $1 AND $2 ORDER BY id`, lo, hi)
	if err != nil {
		return 0, 0, err
	}
	var script bytes.Buffer
	const head = `INSERT INTO %s AS cur (id, k, v, name, amount, created_at, body) VALUES `
	const tailSQL = ` ON CONFLICT (id) DO UPDATE SET k = EXCLUDED.k, v = EXCLUDED.v, name = EXCLUDED.name, amount = EXCLUDED.amount, created_at = EXCLUDED.created_at, body = EXCLUDED.body;` + "\n"
	var n int64
	for rows.Next() {
		var values string
		if err := rows.Scan(&values); err != nil {
			rows.Close()
			return 0, 0, err
		}
		if n%1000 == 0 {
			if n > 0 {
				script.WriteString(tailSQL)
			}
			fmt.Fprintf(&script, head, quoted)
		} else {
			script.WriteString(", ")
		}
		script.WriteString(values)
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	if n == 0 {
		return 0, 0, errors.New("no service rows to upsert")
	}
	script.WriteString(tailSQL)
	path := filepath.Join(b.logDir, table+".sql")
	if err := os.WriteFile(path, script.Bytes(), 0o644); err != nil {
		return 0, 0, err
	}
	defer os.Remove(path)
	bin, err := exec.LookPath("psql")
	if err != nil {
		if bin = "/usr/lib/postgresql/15/bin/psql"; !fileExists(bin) {
			return 0, 0, errors.New("psql not found")
		}
	}
	cmd := exec.CommandContext(ctx, bin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path, testenv.PGURL("monolith"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("psql: %v: %s", err, tail(out.String(), 500))
	}
	secs := time.Since(start).Seconds()
	var got int64
	if err := b.mono.QueryRow(ctx, `SELECT count(*) FROM `+quoted).Scan(&got); err != nil {
		return 0, 0, err
	}
	if got != n {
		return 0, 0, fmt.Errorf("psql upserted %d of %d rows", got, n)
	}
	if !b.cfg.keep {
		b.mono.Exec(ctx, "DROP TABLE IF EXISTS "+quoted)
	}
	return n, secs, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// dropReverseState drops the reverse slot and publication scoop created in
// the service database, and the row versions of the table on both sides
// (scoop.row_versions, keyed by schema-qualified table name).
func (b *bench) dropReverseState(slot, monoTable, svcTable string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		// The walsender of a stopped scoop may take a moment to exit.
		if _, err = b.svc.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		b.fail("drop reverse slot "+slot, err)
	}
	if b.cfg.keep {
		return
	}
	b.svc.Exec(ctx, `DROP PUBLICATION IF EXISTS `+schema.QuoteIdent(slot))
	const versions = `DELETE FROM scoop.row_versions WHERE tbl = $1`
	if _, err := b.mono.Exec(ctx, versions, "public."+monoTable); err != nil {
		logf("cleanup: monolith row versions of %s: %v", monoTable, err)
	}
	if _, err := b.svc.Exec(ctx, versions, "public."+svcTable); err != nil {
		logf("cleanup: service row versions of %s: %v", svcTable, err)
	}
}
