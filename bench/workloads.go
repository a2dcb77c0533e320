package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// workload is a set of transactions on one monolith table. The table may be
// pre-filled before the slots exist (those rows reach Kafka as the slots'
// snapshots, during setup, and are not measured).
type workload struct {
	name    string
	desc    string
	prefill int
	changes int // row changes written by the workload
	msgs    int // Kafka records they become (a delete adds a tombstone)
	write   func(ctx context.Context, db *pgxpool.Pool, table string) error
	// env is added to the environment of the workload's scoop processes.
	env []string
}

func (b *bench) workload(name string) *workload {
	c := b.cfg
	switch name {
	case "insert":
		n := c.rows
		return &workload{name: name, desc: fmt.Sprintf("%d small-row inserts, 1,000 per transaction", n), changes: n, msgs: n,
			write: func(ctx context.Context, db *pgxpool.Pool, t string) error {
				for lo := 1; lo <= n; lo += 1000 {
					if _, err := db.Exec(ctx, insertSQL(t, int64(lo), int64(min(lo+999, n)), 0)); err != nil {
						return err
					}
				}
				return nil
			}}
	case "schemas":
		// The insert workload with Kafka Connect's schemas in every key and
		// value (SCOOP_EVENT_SCHEMAS=true): its CPU per change is compared
		// with the plain insert workload's.
		w := b.workload("insert")
		w.name, w.desc = name, w.desc+", events with schemas (SCOOP_EVENT_SCHEMAS=true)"
		w.env = []string{"SCOOP_EVENT_SCHEMAS=true"}
		return w
	case "update":
		n := c.updateRows
		return &workload{name: name, desc: fmt.Sprintf("%d updates of a pre-filled table, 1,000 per transaction", n), prefill: n, changes: n, msgs: n,
			write: func(ctx context.Context, db *pgxpool.Pool, t string) error {
				for lo := 1; lo <= n; lo += 1000 {
					sql := fmt.Sprintf(`UPDATE %s SET v = v + 1, amount = amount + 1 WHERE id BETWEEN %d AND %d`, t, lo, min(lo+999, n))
					if _, err := db.Exec(ctx, sql); err != nil {
						return err
					}
				}
				return nil
			}}
	case "mix":
		ops := c.mixOps
		txs := ops / 1000
		p := ops // pre-filled rows; each transaction updates 400 and deletes 200 of them
		return &workload{name: name, desc: fmt.Sprintf("%d changes of a pre-filled table, per transaction 400 inserts + 400 updates + 200 deletes", ops),
			prefill: p, changes: ops, msgs: txs * (400 + 400 + 2*200),
			write: func(ctx context.Context, db *pgxpool.Pool, t string) error {
				for j := 0; j < txs; j++ {
					ins := int64(p + j*400)
					sql := "BEGIN;\n" + insertSQL(t, ins+1, ins+400, 0) + ";\n" +
						fmt.Sprintf("UPDATE %s SET v = v + 1, name = name || '+' WHERE id BETWEEN %d AND %d;\n", t, j*600+1, j*600+400) +
						fmt.Sprintf("DELETE FROM %s WHERE id BETWEEN %d AND %d;\nCOMMIT", t, j*600+401, j*600+600)
					if _, err := db.Exec(ctx, sql); err != nil {
						return err
					}
				}
				return nil
			}}
	case "bigtx":
		n := c.bigtxRows
		return &workload{name: name, desc: fmt.Sprintf("one transaction of %d small-row inserts", n), changes: n, msgs: n,
			write: func(ctx context.Context, db *pgxpool.Pool, t string) error {
				_, err := db.Exec(ctx, insertSQL(t, 1, int64(n), 0))
				return err
			}}
	case "toast":
		n := c.toastRows
		return &workload{name: name, desc: fmt.Sprintf("%d wide-row inserts (%d bytes of TOASTed text each, 100 per transaction), then an update of each that leaves the text unchanged (1,000 per transaction)", n, c.toastBytes),
			changes: 2 * n, msgs: 2 * n,
			write: func(ctx context.Context, db *pgxpool.Pool, t string) error {
				for lo := 1; lo <= n; lo += 100 {
					if _, err := db.Exec(ctx, insertSQL(t, int64(lo), int64(min(lo+99, n)), c.toastBytes)); err != nil {
						return err
					}
				}
				for lo := 1; lo <= n; lo += 1000 {
					sql := fmt.Sprintf(`UPDATE %s SET v = v + 1 WHERE id BETWEEN %d AND %d`, t, lo, min(lo+999, n))
					if _, err := db.Exec(ctx, sql); err != nil {
						return err
					}
				}
				return nil
			}}
	}
	panic("unknown workload " + name)
}

// runWorkload: setup (slots, snapshots of the pre-fill) -> the workload
// written once -> every consumer of that WAL backlog measured in turn.
func (b *bench) runWorkload(ctx context.Context, w *workload) *workloadResult {
	wr := &workloadResult{Name: w.name, Description: w.desc, Changes: w.changes, Messages: w.msgs, Prefill: w.prefill}
	table := b.id + "_" + w.name
	phase := func(p string) string { return w.name + "/" + p }
	if err := b.createMonoTable(ctx, table); err != nil {
		b.fail(phase("create table"), err)
		return wr
	}
	if w.prefill > 0 {
		if err := b.fill(ctx, table, w.prefill, 10000); err != nil {
			b.fail(phase("prefill"), err)
			return wr
		}
		b.mono.Exec(ctx, "VACUUM ANALYZE "+table)
	}
	roles := []*role{b.newRole("src", "parked", table), b.newRole("pg", "pg", table), b.newRole("cass", "cass", table)}
	if w.name == b.cfg.profileWorkload && b.cfg.profile {
		roles = append(roles, b.newRole("prof", "pg", table), b.newRole("profc", "cass", table))
	} else if w.name == "schemas" && b.cfg.profile {
		// End to end into PostgreSQL too, for the schemas / plain CPU
		// ratio of one process running source and sink.
		roles = append(roles, b.newRole("prof", "pg", table))
	}
	for _, r := range roles {
		r.env = w.env
	}
	byName := map[string]*role{}
	for _, r := range roles {
		byName[r.name] = r
	}
	if err := b.setup(ctx, w, roles); err != nil {
		b.fail(phase("setup"), err)
		for _, r := range roles {
			b.dropSlot(r.slot)
		}
		return wr
	}

	// Two raw decoder slots (the faster drain counts), created last, just
	// before the workload.
	rawSlots := []string{table + "_raw", table + "_raw2"}
	for _, s := range rawSlots {
		b.add(&b.slots, s)
		if _, err := b.mono.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, s); err != nil {
			b.fail(phase("create raw slot"), err)
			return wr
		}
	}
	rawSlot := rawSlots[0]

	logf("%s: writing the workload", w.name)
	start := time.Now()
	if err := w.write(ctx, b.mono, table); err != nil {
		b.fail(phase("write"), err)
		for _, r := range roles {
			b.dropSlot(r.slot)
		}
		for _, s := range rawSlots {
			b.dropSlot(s)
		}
		return wr
	}
	wr.WriteSeconds = time.Since(start).Seconds()
	var end string
	b.mono.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn()::text`).Scan(&end)
	var walBytes int64
	b.mono.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, confirmed_flush_lsn)::int8 FROM pg_replication_slots WHERE slot_name = $2`, end, rawSlot).Scan(&walBytes)
	wr.WALMB = float64(walBytes) / (1 << 20)
	logf("%s: %d changes written in %.1fs, %.0f MB of WAL, end LSN %s", w.name, w.changes, wr.WriteSeconds, wr.WALMB, end)

	// 1. raw decode, best of two
	for _, s := range rawSlots {
		if secs, err := b.rawDecode(ctx, s, byName["src"].slot, end); err != nil {
			b.fail(phase("raw decode"), err)
		} else {
			logf("%s: pg_recvlogical drained %d changes in %.2fs: %.0f/s", w.name, w.changes, secs, float64(w.changes)/secs)
			if wr.RawDecode == nil || secs < wr.RawDecode.Seconds {
				wr.RawDecode = &rate{Seconds: secs, PerSec: float64(w.changes) / secs}
			}
		}
		b.dropSlot(s)
	}

	// 3. scoop source alone (sink parked)
	src := byName["src"]
	if pr, err := b.measure(ctx, w, src, "source", func(c context.Context) (int64, error) { return b.topicCount(c, src.topic) }, 10*time.Millisecond, nil); err != nil {
		b.fail(phase("scoop source"), err)
	} else {
		wr.Source = pr
	}
	b.dropSlot(src.slot)

	// 2. Kafka's producer for the same record count and mean size: as asked
	// (random payload, no compression), and like for like (scoop's own
	// records, lz4 and large batches, as scoop's producer).
	if size, values, err := b.sampleRecords(ctx, src.topic); err != nil {
		b.fail(phase("sample records"), err)
	} else {
		wr.EventBytes = size
		logf("%s: ProducerPerformance, %d records of %.0f bytes", w.name, w.msgs, size)
		if b.cfg.smoke && w.name != "insert" {
			// Smoke runs start one JVM less per workload (the main workload
			// still runs both producers): smoke size says nothing of rates.
			logf("%s: random-payload producer skipped (smoke)", w.name)
		} else if rps, line, err := b.rawProduce(ctx, table+"_perf", w.msgs, "--record-size", strconv.Itoa(int(math.Round(size))), "--command-property", "acks=all"); err != nil {
			b.fail(phase("raw produce"), err)
		} else {
			secs := float64(w.msgs) / rps
			wr.RawProduce = &rate{Seconds: secs, PerSec: float64(w.changes) / secs, RecordsPerSec: rps, Detail: line}
			logf("%s: %s", w.name, line)
		}
		payloads := filepath.Join(b.logDir, w.name+".payloads")
		if err := os.WriteFile(payloads, bytes.Join(values, []byte("\n")), 0o644); err != nil {
			b.fail(phase("payload file"), err)
		} else if rps, line, err := b.rawProduce(ctx, table+"_perflz4", w.msgs, "--payload-file", payloads,
			"--command-property", "acks=all", "compression.type=lz4", "batch.size=1048576", "linger.ms=5"); err != nil {
			b.fail(phase("raw produce lz4"), err)
		} else {
			secs := float64(w.msgs) / rps
			wr.RawProduceLZ4 = &rate{Seconds: secs, PerSec: float64(w.changes) / secs, RecordsPerSec: rps, Detail: line}
			logf("%s: lz4, scoop's records: %s", w.name, line)
		}
	}
	if wr.Source != nil {
		produce := wr.RawProduce
		if produce == nil || (wr.RawProduceLZ4 != nil && wr.RawProduceLZ4.PerSec > produce.PerSec) {
			produce = wr.RawProduceLZ4
		}
		wr.Source.Limit = minRate(wr.RawDecode, produce)
		wr.Source.Ratio = ratio(wr.Source.PerSec, wr.Source.Limit)
	}

	// 4a. the PostgreSQL sink on its filled topic, then the psql upsert and COPY
	pg := byName["pg"]
	if fill, err := b.fillTopic(ctx, w, pg, end); err != nil {
		b.fail(phase("fill pg topic"), err)
	} else if pr, err := b.measure(ctx, w, pg, "pg sink", b.appliedCount(pg), 25*time.Millisecond, b.sinkProfile(w, pg, fill)); err != nil {
		b.fail(phase("scoop pg sink"), err)
	} else {
		pr.addFill(fill, w.changes)
		b.checkNotProducedAgain(ctx, w, pg, phase("pg sink"))
		wr.PGSink = pr
		want, err1 := pgChecksum(ctx, b.mono, table)
		got, err2 := pgChecksum(ctx, b.svc, pg.target)
		if err1 != nil || err2 != nil || want != got {
			b.fail(phase("pg sink check"), fmt.Errorf("monolith %s, service %s (%v %v)", want, got, err1, err2))
		} else {
			pr.Check = got
		}
	}
	b.dropSlot(pg.slot)
	// The PostgreSQL server's own limits on the same rows: its upsert
	// (COPY into staging + one INSERT ... SELECT ... ON CONFLICT DO UPDATE,
	// by psql: the sink's target), and COPY into a fresh table (reference).
	if dump, _, err := b.dumpTable(ctx, table); err != nil {
		b.fail(phase("dump rows"), err)
	} else {
		if rows, secs, err := b.rawPGUpsert(ctx, dump, table+"_upsert", w.prefill); err != nil {
			b.fail(phase("raw upsert"), err)
		} else {
			wr.Upsert = &rate{Seconds: secs, PerSec: float64(rows) / secs, Rows: rows,
				Detail: "psql -1: COPY into a temporary staging table, one INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE"}
			logf("%s: psql upsert (COPY to staging + INSERT ... ON CONFLICT) of %d rows in %.2fs: %.0f rows/s", w.name, rows, secs, wr.Upsert.PerSec)
			if wr.PGSink != nil {
				wr.PGSink.Limit = wr.Upsert.PerSec
				wr.PGSink.Ratio = ratio(wr.PGSink.PerSec, wr.Upsert.PerSec)
			}
		}
		if rows, secs, err := b.rawCopy(ctx, dump, table+"_copy"); err != nil {
			b.fail(phase("raw COPY"), err)
		} else {
			wr.Copy = &rate{Seconds: secs, PerSec: float64(rows) / secs, Rows: rows}
			logf("%s: COPY of %d rows in %.2fs: %.0f rows/s", w.name, rows, secs, wr.Copy.PerSec)
			if wr.PGSink != nil {
				wr.PGSink.CopyRatio = ratio(wr.PGSink.PerSec, wr.Copy.PerSec)
			}
		}
		os.Remove(dump)
	}

	// 4b. the Cassandra sink on its filled topic, then the plain gocql loop
	cs := byName["cass"]
	if fill, err := b.fillTopic(ctx, w, cs, end); err != nil {
		b.fail(phase("fill cassandra topic"), err)
	} else if pr, err := b.measure(ctx, w, cs, "cassandra sink", b.appliedCount(cs), 25*time.Millisecond, b.sinkProfile(w, cs, fill)); err != nil {
		b.fail(phase("scoop cassandra sink"), err)
	} else {
		pr.addFill(fill, w.changes)
		b.checkNotProducedAgain(ctx, w, cs, phase("cassandra sink"))
		wr.CassSink = pr
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		want, err1 := monoChecksumCass(cctx, b, table)
		got, err2 := b.cassChecksum(cctx, cs.target)
		cancel()
		if err1 != nil || err2 != nil || want != got {
			b.fail(phase("cassandra sink check"), fmt.Errorf("monolith %s, cassandra %s (%v %v)", want, got, err1, err2))
		} else {
			pr.Check = got
		}
	}
	b.dropSlot(cs.slot)
	if rows, secs, err := b.rawCassandra(ctx, table, w.name+"_raw"); err != nil {
		b.fail(phase("raw cassandra loop"), err)
	} else {
		wr.CassLoop = &rate{Seconds: secs, PerSec: float64(rows) / secs, Rows: rows}
		logf("%s: gocql loop wrote %d rows in %.2fs: %.0f rows/s", w.name, rows, secs, wr.CassLoop.PerSec)
		if wr.CassSink != nil {
			wr.CassSink.Limit = wr.CassLoop.PerSec
			wr.CassSink.Ratio = ratio(wr.CassSink.PerSec, wr.CassLoop.PerSec)
		}
	}

	// CPU profiles of source + each sink on the same backlog.
	for _, x := range []struct {
		role, label, file string
		took              *scoopRate
		into              **scoopRate
	}{{"prof", "source + PostgreSQL sink", "latest.cpu.pprof", wr.PGSink, &wr.PGEndToEnd}, {"profc", "source + Cassandra sink", "latest.cpu-cassandra.pprof", wr.CassSink, &wr.CassEndToEnd}} {
		r := byName[x.role]
		if r == nil {
			continue
		}
		if w.name != b.cfg.profileWorkload {
			x.file = "latest.cpu-" + w.name + ".pprof"
		}
		secs := 5.0
		if x.took != nil {
			secs = x.took.Seconds + x.took.FillCPU["wall"] // end to end: about fill + sink
		}
		if sr, err := b.profile(ctx, w, r, x.label, x.file, secs); err != nil {
			b.fail(phase("profile "+x.label), err)
		} else {
			*x.into = sr
		}
		b.dropSlot(r.slot)
	}
	if !b.cfg.keep {
		b.mono.Exec(ctx, "DROP TABLE IF EXISTS "+table)
	}
	return wr
}

// setup starts one scoop per role on the still unwritten table: each creates
// its slot, publication and topic, snapshots the pre-fill and (for sinks)
// applies it; then they are stopped, and the workload becomes their backlog.
func (b *bench) setup(ctx context.Context, w *workload, roles []*role) error {
	logf("%s: setup of %d scoop slots", w.name, len(roles))
	var wg sync.WaitGroup
	errs := make([]error, len(roles))
	for i, r := range roles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.setupRole(ctx, w, r)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) setupRole(ctx context.Context, w *workload, r *role) error {
	if err := b.createTopics(ctx, r.topic, r.dlq); err != nil {
		return err
	}
	if r.kind == "parked" {
		if err := b.createSvcTable(ctx, r.target, "id text PRIMARY KEY"); err != nil {
			return err
		}
	} else if r.kind == "pg" {
		b.add(&b.svcTables, r.target)
	}
	p, err := b.startScoop("setup", r)
	if err != nil {
		return err
	}
	defer b.stopProc(p)
	timeout := phaseTimeout(w.prefill)
	if _, err := waitCount(ctx, p, p.start, 1, timeout, 50*time.Millisecond, func(c context.Context) (int64, error) { return b.snapshotted(c, r.slot) }); err != nil {
		return fmt.Errorf("%s: snapshot not recorded: %w", r.slot, err)
	}
	if r.kind != "parked" && w.prefill > 0 {
		if _, err := waitCount(ctx, p, p.start, int64(w.prefill), timeout, 100*time.Millisecond, func(c context.Context) (int64, error) { return b.groupCount(c, r.group, r.topic) }); err != nil {
			return fmt.Errorf("%s: pre-fill not applied: %w", r.slot, err)
		}
	}
	return nil
}

// profileSpec is a CPU profile to take of a measured process.
type profileSpec struct {
	label, file string
	secs        int // a profile longer than the work only adds idle time, which has no samples
}

// sinkProfile profiles a sink phase of the profiled workload, for about
// twice as long as the fill of its topic took: the sink alone.
func (b *bench) sinkProfile(w *workload, r *role, fill map[string]float64) *profileSpec {
	if !b.cfg.profile || w.name != b.cfg.profileWorkload {
		return nil
	}
	secs := max(2, min(int(math.Ceil(2*fill["wall"])), 60))
	if r.kind == "cass" {
		return &profileSpec{"Cassandra sink alone, " + w.name + " backlog in its topic", "latest.cpu-cassandra-sink.pprof", secs}
	}
	return &profileSpec{"PostgreSQL sink alone, " + w.name + " backlog in its topic", "latest.cpu-pg-sink.pprof", secs}
}

// fillTopic runs a sink role's scoop with its store unreachable until the
// role's topic holds the whole backlog (the source decodes and produces it;
// the sink retries its connection and applies nothing). The sink phase then
// drains a filled topic with the source caught up, like the raw limits it is
// compared with (psql's upsert, the gocql loop), which have no source
// sharing the two cores. It returns the fill's CPU seconds (the source's
// share of the change's path); end to end, source and sink in one process,
// is measured by the profiled runs of the insert workload.
//
// The sink phase's source then starts from the slot: its walsender decodes
// again the WAL from the slot's restart_lsn, which moves only past a
// record of running transactions that the slot confirmed. So the fill waits
// (a CHECKPOINT writes one) until the slot confirmed end and its
// restart_lsn passed it, for 10 s at most; what is left is recorded
// (restart_lag_mb) and the walsender's CPU is in the sink phase's figures.
func (b *bench) fillTopic(ctx context.Context, w *workload, r *role, end string) (map[string]float64, error) {
	closed, err := freePort() // nothing listens there: every connection is refused
	if err != nil {
		return nil, err
	}
	store := "postgres://bench@" + closed + "/service?connect_timeout=1"
	if r.kind == "cass" {
		store = "cassandra://" + closed + "/" + b.ks
	}
	meter := b.startCPU()
	p, err := b.startScoop("fill", r, "SCOOP_STORE_SVC_URL="+store)
	if err != nil {
		return nil, err
	}
	defer b.stopProc(p)
	want := int64(w.prefill + w.msgs)
	if _, err := waitCount(ctx, p, p.start, want, phaseTimeout(w.msgs), 10*time.Millisecond, func(c context.Context) (int64, error) { return b.topicCount(c, r.topic) }); err != nil {
		return nil, fmt.Errorf("topic %s not filled: %w", r.topic, err)
	}
	// The group committed nothing during the fill (on a fresh broker its
	// coordinator may take a few seconds to answer: asked again).
	n, err := b.groupCount(ctx, r.group, r.topic)
	for try := 0; err != nil && try < 20 && ctx.Err() == nil; try++ {
		time.Sleep(500 * time.Millisecond) // the group coordinator, asked again
		n, err = b.groupCount(ctx, r.group, r.topic)
	}
	if err != nil {
		return nil, fmt.Errorf("group %s after the fill: %w", r.group, err)
	}
	if n > int64(w.prefill) {
		return nil, fmt.Errorf("the sink applied while its store was unreachable: group %s committed %d records, the pre-fill is %d", r.group, n, w.prefill)
	}
	cpu := meter.stop(ctx, b, p)
	if _, err := b.mono.Exec(ctx, "CHECKPOINT"); err != nil {
		return nil, fmt.Errorf("checkpoint after the fill: %w", err)
	}
	var confirmed bool
	var lag int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := b.mono.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $1::pg_lsn, greatest(pg_wal_lsn_diff($1::pg_lsn, restart_lsn), 0)::int8
			FROM pg_replication_slots WHERE slot_name = $2`, end, r.slot).Scan(&confirmed, &lag)
		if err != nil {
			return nil, fmt.Errorf("slot %s after the fill: %w", r.slot, err)
		}
		if (confirmed && lag == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // the slot's position, polled
	}
	if !confirmed {
		return nil, fmt.Errorf("slot %s: the fill's records are in the topic but the slot did not confirm %s within 10 s", r.slot, end)
	}
	cpu["restart_lag_mb"] = math.Round(float64(lag)/(1<<20)*10) / 10
	logf("%s: %s topic filled (store unreachable) in %.2fs; scoop CPU %.2fs; WAL the sink phase's walsender decodes again: %.1f MB", w.name, r.name, cpu["wall"], cpu["scoop"], cpu["restart_lag_mb"])
	return cpu, nil
}

// checkNotProducedAgain fails the phase if the sink phase's source wrote
// to the topic (it should have found the slot caught up by the fill).
func (b *bench) checkNotProducedAgain(ctx context.Context, w *workload, r *role, phase string) {
	if n, err := b.topicCount(ctx, r.topic); err != nil || n != int64(w.prefill+w.msgs) {
		b.fail(phase, fmt.Errorf("topic %s holds %d records after the sink phase, want %d: its source produced again (%v)", r.topic, n, w.prefill+w.msgs, err))
	}
}

// addFill records the fill's CPU: ProcessUSPerChange is scoop's CPU per
// change over the fill and the sink phase, i.e. the whole path from the
// WAL into the store.
func (sr *scoopRate) addFill(fill map[string]float64, changes int) {
	sr.FillCPU = fill
	if changes > 0 {
		sr.ProcessUSPerChange = math.Round((fill["scoop"]+sr.CPU["scoop"])/float64(changes)*1e6*100) / 100
	}
}

// measure starts a role's scoop on the backlog and waits until count (topic
// records or committed sink offsets) covers the snapshot and the workload.
// prof, when set, is a CPU profile taken of the measured process (sampling
// costs about 1% of its CPU).
func (b *bench) measure(ctx context.Context, w *workload, r *role, what string, count func(context.Context) (int64, error), every time.Duration, prof *profileSpec) (*scoopRate, error) {
	want := int64(w.prefill + w.msgs)
	meter := b.startCPU()
	p, err := b.startScoop("measure", r)
	if err != nil {
		return nil, err
	}
	defer b.stopProc(p)
	var profiled <-chan profileData
	if prof != nil {
		profiled = p.cpuProfile(prof.secs)
	}
	// For the source alone, the window starts when scoop decodes its first
	// event (its /status counters), not when the first record reaches the
	// topic: by then the forwarder's channel and first batch already hold
	// thousands of decoded events, which would flatter the rate.
	var decoded func() (time.Time, bool)
	if r.kind == "parked" {
		decoded = p.watchDecode(ctx)
	}
	g, err := waitCount(ctx, p, p.start, want, phaseTimeout(w.msgs), every, count)
	if err != nil {
		return nil, err
	}
	if decoded != nil {
		if t, ok := decoded(); ok && t.Before(g.done) && (g.first.IsZero() || t.Before(g.first)) {
			g.first, g.firstCount = t, g.initial
		}
	}
	cpu := meter.stop(ctx, b, p)
	rss := p.peakRSSMB()
	if prof != nil {
		if res := <-profiled; res.err != nil {
			b.fail(w.name+"/profile "+prof.label, res.err)
		} else if err := b.saveProfile(&profileResult{Label: prof.label, Seconds: prof.secs, DrainSeconds: g.wall(), PeakRSSMB: rss}, res.data, prof.file); err != nil {
			b.fail(w.name+"/profile "+prof.label, err)
		}
	}
	perMsg := float64(w.changes) / float64(w.msgs)
	steady, ok := g.steadyRate(float64(w.changes), perMsg)
	sr := &scoopRate{
		Seconds:        g.wall(),
		PerSec:         steady,
		Steady:         ok,
		WallPerSec:     float64(w.changes) / g.wall(),
		FirstProgress:  g.first.Sub(g.start).Seconds(),
		PeakRSSMB:      rss,
		CPU:            cpu,
		CPUUSPerChange: usPerChange(cpu, w.changes),
	}
	b.res.Phases = append(b.res.Phases, phaseRSS{Phase: w.name + " " + what, PeakRSSMB: rss, Seconds: sr.Seconds,
		Changes: w.changes, CPUUSPerChange: sr.CPUUSPerChange, CPU: cpu})
	if n, err := b.topicCount(ctx, r.dlq); err == nil && n > 0 {
		b.fail(w.name+"/"+what, fmt.Errorf("%d dead letters in %s", n, r.dlq))
	}
	logf("%s: scoop %s: %d changes, %.2fs wall (progress from %.2fs): %.0f/s steady, %.0f/s wall; peak RSS %.1f MB; scoop CPU %.2f µs/change; CPU s %v",
		w.name, what, w.changes, sr.Seconds, sr.FirstProgress, sr.PerSec, sr.WallPerSec, rss, sr.CPUUSPerChange, cpu)
	return sr, nil
}

// usPerChange is scoop's process CPU (user + system, from /proc, start-up
// included) in microseconds per row change of the phase.
func usPerChange(cpu map[string]float64, changes int) float64 {
	if changes <= 0 || cpu["scoop"] <= 0 {
		return 0
	}
	return math.Round(cpu["scoop"]/float64(changes)*1e6*100) / 100
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func minRate(rs ...*rate) float64 {
	m := 0.0
	for _, r := range rs {
		if r != nil && (m == 0 || r.PerSec < m) {
			m = r.PerSec
		}
	}
	return m
}
