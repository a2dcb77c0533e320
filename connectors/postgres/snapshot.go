package postgres

import (
	"context"
	"fmt"
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
			enc := schema.NewEncoder(s.cfg.Encoding, s.types)
			for t := range work {
				if err := s.snapshotTable(gctx, pc, enc, t, point, at, out); err != nil {
					return err
				}
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

func (s *Source) snapshotTable(ctx context.Context, pc *pgconn.PgConn, enc *schema.Encoder, t *schema.Table, point uint64, started time.Time, out chan<- pipeline.Item) error {
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
			ev := schema.Event{Op: schema.OpRead, Table: t, After: row,
				Source: schema.Source{LSN: point, CommitTime: started, Snapshot: schema.SnapshotTrue}}
			rec, err := eventRecord(enc, topic, &ev)
			if err != nil {
				return err
			}
			return s.handOver(ctx, out, pipeline.Item{Record: rec})
		})
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", name, err)
		}
		rows += int64(n)
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
	key, err := enc.Key(nil, ev)
	if err != nil {
		return nil, err
	}
	val, err := enc.Value(make([]byte, 0, 256), ev, time.Now())
	if err != nil {
		return nil, err
	}
	return &pipeline.Record{Topic: topic, Key: key, Value: val, Time: ev.Source.CommitTime}, nil
}
