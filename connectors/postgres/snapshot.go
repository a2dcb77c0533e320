package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// snapshot copies the current rows of tables as op "r" events. With an
// exported snapshot name every reader sees exactly the state at the slot's
// consistent point, so the stream continues without gap or overlap. Tables
// are read by several workers in parallel, each table in primary-key ranges
// of SnapshotChunkRows rows, so memory stays bounded whatever the size.
func (s *Source) snapshot(ctx context.Context, snapshotName string, point uint64, at time.Time, tables []*schema.Table, out chan<- pipeline.Item) error {
	if len(tables) == 0 {
		return nil
	}
	started := time.Now()
	work := make(chan *schema.Table, len(tables))
	for _, t := range tables {
		work <- t
	}
	close(work)
	g, gctx := errgroup.WithContext(ctx)
	workers := min(s.cfg.SnapshotWorkers, len(tables))
	marks := &snapshotMarks{active: workers}
	for i := 0; i < workers; i++ {
		g.Go(func() error {
			conn, err := connect(gctx, s.cfg.URL)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			pc := conn.PgConn()
			if err := execSimple(gctx, pc, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
				return fmt.Errorf("snapshot: begin: %w", err)
			}
			if snapshotName != "" {
				if err := execSimple(gctx, pc, "SET TRANSACTION SNAPSHOT "+schema.QuoteLiteral(snapshotName)); err != nil {
					return fmt.Errorf("snapshot: import exported snapshot %s: %w", snapshotName, err)
				}
			}
			w := &snapshotWorker{s: s, enc: schema.NewEncoder(s.cfg.Encoding, s.types), marks: marks, out: out}
			for t := range work {
				if err := w.table(gctx, pc, t, point, at); err != nil {
					return err
				}
			}
			if err := w.finish(gctx); err != nil {
				return err
			}
			return execSimple(gctx, pc, "COMMIT")
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	s.log.Info("snapshot complete", "tables", len(tables), "rows", s.stats.SnapshotRows.Load(), "took", time.Since(started).Round(time.Millisecond))
	return nil
}

func execSimple(ctx context.Context, pc *pgconn.PgConn, sql string) error {
	_, err := pc.Exec(ctx, sql).ReadAll()
	return err
}

// snapshotMarks gives snapshot rows Debezium's source.snapshot markers,
// across the workers: "first" on the first row handed over, "last" on the
// last, "first_in_data_collection" and "last_in_data_collection" on the
// first and last row of every other table, "true" in between. (Debezium
// reads tables one after the other; scoop's workers read several at once,
// so "first" and "last" go to the first and last row of the whole snapshot
// in the order they are handed over, whichever tables they belong to.)
type snapshotMarks struct {
	mu      sync.Mutex
	started bool // a row was handed over
	active  int  // workers that may still hand over rows
	// parked is the last row of a worker that finished while others still
	// ran: the snapshot's last row if none of them hands over another.
	parked *heldRow
}

// mark is the marker of h (under mu): "last" when last is set.
func (m *snapshotMarks) mark(h *heldRow, last bool) string {
	defer func() { m.started = true }()
	switch {
	case last:
		return schema.SnapshotLast
	case h.firstInTable && !m.started:
		return schema.SnapshotFirst
	case h.lastInTable:
		return schema.SnapshotLastInTable
	default:
		return schema.SnapshotFirstInTable
	}
}

// snapshotWorker reads tables one after the other, holding back the last row
// it read until the next row (or the end of its work) says which marker the
// held row gets: one row per worker, so memory stays bounded.
type snapshotWorker struct {
	s     *Source
	enc   *schema.Encoder
	marks *snapshotMarks
	out   chan<- pipeline.Item
	held  *heldRow
}

type heldRow struct {
	ev           schema.Event
	topic        string
	firstInTable bool
	lastInTable  bool
}

// hand encodes the held row, which the worker read another row after, with
// its marker and hands it over. A row that is first or last of its table is
// marked and handed over under the lock, so the row marked "first" precedes
// every other worker's rows.
func (w *snapshotWorker) hand(ctx context.Context) error {
	h := w.held
	w.held = nil
	if !h.firstInTable && !h.lastInTable {
		return w.send(ctx, h, schema.SnapshotTrue)
	}
	w.marks.mu.Lock()
	defer w.marks.mu.Unlock()
	return w.send(ctx, h, w.marks.mark(h, false))
}

func (w *snapshotWorker) send(ctx context.Context, h *heldRow, mark string) error {
	h.ev.Source.Snapshot = mark
	rec, err := eventRecord(w.enc, h.topic, &h.ev)
	if err != nil {
		return err
	}
	return w.s.handOver(ctx, w.out, pipeline.Item{Record: rec})
}

// finish ends the worker's work. Its held row is the last of its table; it
// is the snapshot's last row when no other worker may still hand over one,
// so a worker that finishes while others still run parks it (handing over
// the row parked before it, which is then not the last), and the worker
// that finishes last hands over the parked row and its own, marking the
// final one "last" (also when its own tables were empty).
func (w *snapshotWorker) finish(ctx context.Context) error {
	own := w.held
	w.held = nil
	if own != nil {
		own.lastInTable = true
	}
	m := w.marks
	m.mu.Lock()
	defer m.mu.Unlock()
	m.active--
	if m.active > 0 {
		if own == nil {
			return nil
		}
		prev := m.parked
		m.parked = own
		if prev == nil {
			return nil
		}
		return w.send(ctx, prev, m.mark(prev, false))
	}
	prev := m.parked
	m.parked = nil
	if own == nil {
		own, prev = prev, nil
	}
	if prev != nil {
		if err := w.send(ctx, prev, m.mark(prev, false)); err != nil {
			return err
		}
	}
	if own == nil {
		return nil
	}
	return w.send(ctx, own, m.mark(own, true))
}

func (w *snapshotWorker) table(ctx context.Context, pc *pgconn.PgConn, t *schema.Table, point uint64, started time.Time) error {
	s := w.s
	name := t.QualifiedName()
	topic := s.cfg.Topic(t.Schema, t.Name)
	var estimate int64
	if r := pc.ExecParams(ctx, estimateRowsSQL, [][]byte{[]byte(fmt.Sprint(t.OID))}, nil, nil, nil).Read(); r.Err == nil && len(r.Rows) > 0 {
		fmt.Sscan(string(r.Rows[0][0]), &estimate)
	}
	tn := TableName{Schema: t.Schema, Name: t.Name}
	s.stats.Snapshots.Start(tn, estimate, time.Now())
	q := newChunkQuery(t, s.cfg.SnapshotChunkRows)
	var last [][]byte
	var rows int64
	lastLog := time.Now()
	for {
		next, n, err := q.each(ctx, pc, last, func(row schema.Row) error {
			if w.held != nil {
				// Held from the previous table: its last row.
				w.held.lastInTable = rows == 0
				if err := w.hand(ctx); err != nil {
					return err
				}
			}
			w.held = &heldRow{topic: topic, firstInTable: rows == 0,
				ev: schema.Event{Op: schema.OpRead, Table: t, After: row,
					Source: schema.Source{LSN: point, CommitTime: started}}}
			rows++
			return nil
		})
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", name, err)
		}
		s.stats.SnapshotRows.Add(uint64(n))
		s.stats.Snapshots.Add(tn, int64(n))
		if time.Since(lastLog) > 5*time.Second {
			s.log.Info("snapshot progress", "table", name, "rows", rows, "estimated_total", estimate)
			lastLog = time.Now()
		}
		if next == nil {
			break
		}
		last = next
	}
	s.stats.Snapshots.Finish(tn)
	s.log.Info("snapshot of table complete", "table", name, "rows", rows)
	return nil
}

// eventRecord encodes an event as a Kafka record.
func eventRecord(enc *schema.Encoder, topic string, ev *schema.Event) (*pipeline.Record, error) {
	key, err := enc.Key(make([]byte, 0, enc.KeyCap(ev.Table)), ev)
	if err != nil {
		return nil, err
	}
	val, err := enc.Value(make([]byte, 0, enc.EventValueCap(ev)), ev, time.Now())
	if err != nil {
		return nil, err
	}
	return &pipeline.Record{Topic: topic, Key: key, Value: val, Time: ev.Source.CommitTime}, nil
}
