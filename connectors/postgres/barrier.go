package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/scoop-cdc/scoop/pipeline"
)

// TruncateBarriers keeps the truncate barriers of the consumer groups in
// the monolith, in scoop.truncate_barriers, which every instance reaches
// (pipeline.TruncateBarriers). One row per truncate and group: the
// partitions whose marker was reached, and when the store was truncated.
type TruncateBarriers struct {
	pool *pgxpool.Pool
}

// barrierRetention is how long a finished barrier is kept. A consumer
// re-reads a finished barrier's marker only until it committed past it
// (seconds); a marker read again after its row is gone would truncate the
// store a second time.
const barrierRetention = "30 days"

// NewTruncateBarriers connects to the monolith and creates the table.
func NewTruncateBarriers(ctx context.Context, url string) (*TruncateBarriers, error) {
	cc, err := parseConfig(url)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("truncate barriers: %w", err)
	}
	pc.ConnConfig = cc
	// Used at truncates only (and once when a mapping starts): few
	// connections, closed when idle, since every mapping of every
	// instance has its own.
	pc.MaxConns = 2
	pc.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("truncate barriers: connect to the monolith: %w", err)
	}
	err = prepare(ctx, pool, "create scoop.truncate_barriers", `
		CREATE SCHEMA IF NOT EXISTS scoop;
		CREATE TABLE IF NOT EXISTS scoop.truncate_barriers (
			group_id   text        NOT NULL,
			topic      text        NOT NULL,
			commit_lsn bigint      NOT NULL,
			lsn        bigint      NOT NULL,
			partitions int         NOT NULL,
			arrived    int[]       NOT NULL, -- partitions whose marker was reached
			offsets    bigint[]    NOT NULL, -- their markers' offsets, in the same order
			created_at timestamptz NOT NULL DEFAULT now(),
			done_at    timestamptz,
			PRIMARY KEY (group_id, topic, commit_lsn, lsn))`)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &TruncateBarriers{pool: pool}, nil
}

// Close releases the connections.
func (b *TruncateBarriers) Close() { b.pool.Close() }

// Arrive implements pipeline.TruncateBarriers.
func (b *TruncateBarriers) Arrive(ctx context.Context, id pipeline.BarrierID, partition int, offset int64) (pipeline.BarrierState, error) {
	var st pipeline.BarrierState
	err := b.pool.QueryRow(ctx, `
		INSERT INTO scoop.truncate_barriers AS b (group_id, topic, commit_lsn, lsn, partitions, arrived, offsets)
		VALUES ($1, $2, $3, $4, $5, ARRAY[$6::int], ARRAY[$7::bigint])
		ON CONFLICT (group_id, topic, commit_lsn, lsn) DO UPDATE SET
			arrived = CASE WHEN $6::int = ANY (b.arrived) THEN b.arrived ELSE b.arrived || $6::int END,
			offsets = CASE WHEN $6::int = ANY (b.arrived) THEN b.offsets ELSE b.offsets || $7::bigint END
		RETURNING cardinality(arrived), done_at IS NOT NULL`,
		id.Group, id.Topic, int64(id.CommitLSN), int64(id.LSN), id.Partitions, partition, offset).Scan(&st.Arrived, &st.Done)
	if err != nil {
		return st, fmt.Errorf("truncate barrier %s: record partition %d: %w", id, partition, err)
	}
	return st, nil
}

// State implements pipeline.TruncateBarriers.
func (b *TruncateBarriers) State(ctx context.Context, id pipeline.BarrierID) (pipeline.BarrierState, error) {
	st, err := readBarrier(ctx, b.pool, id, "")
	if err != nil {
		return st, fmt.Errorf("truncate barrier %s: read: %w", id, err)
	}
	return st, nil
}

// Complete implements pipeline.TruncateBarriers: the barrier's row is
// locked while the store is truncated, so among concurrent instances one
// truncates and the others then find it done.
func (b *TruncateBarriers) Complete(ctx context.Context, id pipeline.BarrierID, truncate func(context.Context) error) (pipeline.BarrierState, error) {
	var st pipeline.BarrierState
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		st, err = readBarrier(ctx, tx, id, " FOR UPDATE")
		if err != nil || st.Done || st.Arrived < id.Partitions {
			return err
		}
		if err := truncate(ctx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE scoop.truncate_barriers SET done_at = now()
			WHERE group_id = $1 AND topic = $2 AND commit_lsn = $3 AND lsn = $4`,
			id.Group, id.Topic, int64(id.CommitLSN), int64(id.LSN)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM scoop.truncate_barriers WHERE done_at < now() - interval '`+barrierRetention+`'`); err != nil {
			return err
		}
		st.Done = true
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("truncate barrier %s: complete: %w", id, err)
	}
	return st, nil
}

// Truncated implements pipeline.TruncateBarriers.
func (b *TruncateBarriers) Truncated(ctx context.Context, group, topic string) (pipeline.Truncated, error) {
	var t pipeline.Truncated
	rows, err := b.pool.Query(ctx, `SELECT commit_lsn, lsn, arrived, offsets FROM scoop.truncate_barriers
		WHERE group_id = $1 AND topic = $2 AND done_at IS NOT NULL`, group, topic)
	if err != nil {
		return t, fmt.Errorf("truncate barriers of %s/%s: read: %w", group, topic, err)
	}
	var commitLSN, lsn int64
	var parts []int32
	var offsets []int64
	_, err = pgx.ForEachRow(rows, []any{&commitLSN, &lsn, &parts, &offsets}, func() error {
		id := pipeline.BarrierID{CommitLSN: uint64(commitLSN), LSN: uint64(lsn)}
		for i := range parts {
			if i < len(offsets) {
				t.Add(id, int(parts[i]), offsets[i])
			}
		}
		return nil
	})
	if err != nil {
		return t, fmt.Errorf("truncate barriers of %s/%s: read: %w", group, topic, err)
	}
	return t, nil
}

func readBarrier(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id pipeline.BarrierID, lock string) (pipeline.BarrierState, error) {
	var st pipeline.BarrierState
	err := q.QueryRow(ctx, `SELECT cardinality(arrived), done_at IS NOT NULL FROM scoop.truncate_barriers
		WHERE group_id = $1 AND topic = $2 AND commit_lsn = $3 AND lsn = $4`+lock,
		id.Group, id.Topic, int64(id.CommitLSN), int64(id.LSN)).Scan(&st.Arrived, &st.Done)
	if errors.Is(err, pgx.ErrNoRows) {
		return pipeline.BarrierState{}, nil
	}
	return st, err
}
