package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/internal/verify"
	"github.com/scoop-cdc/scoop/internal/verify/verifyrate"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// verifyResult is the phase "verify": a clean `scoop verify` (verify.Run, in
// this process) of a table of Rows rows against each store kind, next to the
// raw read of that table.
type verifyResult struct {
	Rows   int            `json:"rows"`
	Stores []*verifyStore `json:"stores"`
}

// verifyStore is the verify of one store kind.
type verifyStore struct {
	Store string `json:"store"` // postgres, cassandra
	// Raw: the faster of two reads of the whole table (COPY TO of the
	// monolith table; a full scan of the Cassandra table).
	Raw   *verifyrate.Raw    `json:"raw_read,omitempty"`
	Scoop *verifyrate.Result `json:"scoop,omitempty"`
	Ratio float64            `json:"ratio,omitempty"` // scoop per_s / raw per_s
}

// runVerify measures a clean verify of a BENCH_VERIFY_ROWS table into the
// service PostgreSQL database, then into the run's Cassandra keyspace.
func (b *bench) runVerify(ctx context.Context) {
	n := b.cfg.verifyRows
	vr := &verifyResult{Rows: n}
	b.res.Verify = vr
	table := b.id + "_verify"
	q := schema.QuoteIdent(table)
	logf("=== verify: a clean verify of %d rows per store kind, against the raw read of the table", n)
	b.add(&b.monoTables, q)
	b.add(&b.svcTables, q)
	mono, err := b.mono.Acquire(ctx)
	if err != nil {
		b.fail("verify: connect", err)
		return
	}
	defer mono.Release()
	start := time.Now()
	if err := verifyrate.CreateSource(ctx, mono.Conn(), table, n); err != nil {
		b.fail("verify: fill", err)
		return
	}
	logf("verify: monolith table filled in %.1fs", time.Since(start).Seconds())
	m := pipeline.Mapping{Name: "m-verify", Source: "public." + table, Store: "svc"}

	pg := &verifyStore{Store: "postgres"}
	vr.Stores = append(vr.Stores, pg)
	if err := b.withConn(ctx, b.svc, func(svc *pgxpool.Conn) error {
		return verifyrate.CopyToPostgres(ctx, mono.Conn(), svc.Conn(), table)
	}); err != nil {
		b.fail("verify: PostgreSQL target", err)
	} else {
		if pg.Raw, err = fasterOf(func() (verifyrate.Raw, error) { return verifyrate.CopyTo(ctx, mono.Conn(), table) }); err != nil {
			b.fail("verify: raw COPY TO", err)
		}
		b.measureVerify(ctx, pg, verify.Config{SourceURL: testenv.PGURL("monolith"), StoreURL: testenv.PGURL("service"), Mapping: m})
		if !b.cfg.keep {
			b.svc.Exec(ctx, "DROP TABLE IF EXISTS "+q)
		}
	}

	cass := &verifyStore{Store: "cassandra"}
	vr.Stores = append(vr.Stores, cass)
	start = time.Now()
	if err := verifyrate.CopyToCassandra(ctx, mono.Conn(), b.cass, b.ks, table); err != nil {
		b.fail("verify: Cassandra target", err)
		return
	}
	logf("verify: Cassandra table written in %.1fs", time.Since(start).Seconds())
	if cass.Raw, err = fasterOf(func() (verifyrate.Raw, error) { return verifyrate.Scan(ctx, b.cass, b.ks, table) }); err != nil {
		b.fail("verify: raw Cassandra scan", err)
	}
	b.measureVerify(ctx, cass, verify.Config{SourceURL: testenv.PGURL("monolith"), StoreURL: "cassandra://" + testenv.CassandraAddr() + "/" + b.ks, Mapping: m})
	if !b.cfg.keep {
		b.cass.Query("DROP TABLE IF EXISTS " + schema.QuoteIdent(b.ks) + "." + q).WithContext(ctx).Exec()
		b.mono.Exec(ctx, "DROP TABLE IF EXISTS "+q)
	}
}

// measureVerify runs the clean verify of one store kind and logs it next to
// the raw read.
func (b *bench) measureVerify(ctx context.Context, vs *verifyStore, cfg verify.Config) {
	res, err := verifyrate.Measure(ctx, cfg, int64(b.cfg.verifyRows))
	if err != nil {
		b.fail("verify: "+vs.Store, err)
		return
	}
	vs.Scoop = res
	raw := "raw read failed"
	if vs.Raw != nil {
		vs.Ratio = ratio(res.PerSec, vs.Raw.PerSec)
		raw = fmt.Sprintf("%s %.0f rows/s (%.2fs), ratio %.0f%%", vs.Raw.Detail, vs.Raw.PerSec, vs.Raw.Seconds, vs.Ratio*100)
	}
	flat := "too short to judge"
	if res.Flat != nil {
		flat = map[bool]string{true: "flat", false: "NOT flat"}[*res.Flat]
	}
	logf("verify: %s: %d rows in %.2fs: %.0f rows/s; %s; peak heap in use %.1f MB (live heap's peak per half %.1f / %.1f MB: %s), peak RSS %.1f MB over a base of %.1f MB",
		vs.Store, res.Rows, res.Seconds, res.PerSec, raw, res.PeakHeapMB, res.LiveFirstHalfMB, res.LiveSecondHalfMB, flat, res.PeakRSSMB, res.BaseRSSMB)
}

// fasterOf reads twice (the first read warms the caches as the verify's
// own reads find them) and keeps the faster.
func fasterOf(read func() (verifyrate.Raw, error)) (*verifyrate.Raw, error) {
	var best *verifyrate.Raw
	for range 2 {
		r, err := read()
		if err != nil {
			return nil, err
		}
		if best == nil || r.PerSec > best.PerSec {
			best = &r
		}
	}
	return best, nil
}

func (b *bench) withConn(ctx context.Context, pool *pgxpool.Pool, f func(*pgxpool.Conn) error) error {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return f(c)
}
