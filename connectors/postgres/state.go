package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scoop-cdc/scoop/schema"
)

// scoop keeps its own small state in the monolith, in schema "scoop":
// which slots have completed their initial snapshot (source_slots), and which
// tables of each slot have been copied (source_tables; a replay --snapshot
// removes a table's row, never the slot's). The role needs CREATE on the
// database the first time (or create the schema beforehand).
//
// source_slots came later: a slot with copied tables counts as completed,
// so databases of earlier versions keep their slots.
func ensureStateTables(ctx context.Context, conn *pgx.Conn) error {
	return prepare(ctx, conn, "create scoop state tables", `
		CREATE SCHEMA IF NOT EXISTS scoop;
		CREATE TABLE IF NOT EXISTS scoop.source_tables (
			slot            text NOT NULL,
			schema_name     text NOT NULL,
			table_name      text NOT NULL,
			snapshotted_at  timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (slot, schema_name, table_name)
		);
		CREATE TABLE IF NOT EXISTS scoop.source_slots (
			slot            text PRIMARY KEY,
			snapshotted_at  timestamptz NOT NULL DEFAULT now()
		);
		INSERT INTO scoop.source_slots (slot) SELECT DISTINCT slot FROM scoop.source_tables ON CONFLICT DO NOTHING`)
}

// slotSnapshotted reports whether the slot's initial snapshot completed.
func slotSnapshotted(ctx context.Context, conn *pgx.Conn, slot string) (bool, error) {
	var done bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM scoop.source_slots WHERE slot = $1)`, slot).Scan(&done); err != nil {
		return false, fmt.Errorf("read snapshot state of slot %s: %w", slot, err)
	}
	return done, nil
}

// markSlotSnapshotted records the initial snapshot of the slot and its tables
// in one transaction.
func markSlotSnapshotted(ctx context.Context, conn *pgx.Conn, slot string, tables []TableName) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO scoop.source_slots (slot) VALUES ($1) ON CONFLICT DO NOTHING`, slot); err != nil {
			return fmt.Errorf("record initial snapshot of slot %s: %w", slot, err)
		}
		return markSnapshotted(ctx, tx, slot, tables)
	})
}

func snapshottedTables(ctx context.Context, conn *pgx.Conn, slot string) (map[TableName]bool, error) {
	rows, err := conn.Query(ctx, `SELECT schema_name, table_name FROM scoop.source_tables WHERE slot = $1`, slot)
	if err != nil {
		return nil, fmt.Errorf("read snapshot state: %w", err)
	}
	defer rows.Close()
	done := map[TableName]bool{}
	for rows.Next() {
		var t TableName
		if err := rows.Scan(&t.Schema, &t.Name); err != nil {
			return nil, fmt.Errorf("read snapshot state: %w", err)
		}
		done[t] = true
	}
	return done, rows.Err()
}

// execer is a connection or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func markSnapshotted(ctx context.Context, conn execer, slot string, tables []TableName) error {
	for _, t := range tables {
		if _, err := conn.Exec(ctx, `INSERT INTO scoop.source_tables (slot, schema_name, table_name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, slot, t.Schema, t.Name); err != nil {
			return fmt.Errorf("record snapshot of %s: %w", t, err)
		}
	}
	return nil
}

// syncPublication makes the publication hold exactly the mapped tables.
// Tables taken out also lose their snapshot record, so mapping them again
// copies them again.
func (s *Source) syncPublication(ctx context.Context, conn *pgx.Conn) error {
	pub := schema.QuoteIdent(s.cfg.Publication)
	tables := s.cfg.Tables
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, s.cfg.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("read publication: %w", err)
	}
	if !exists {
		ddl := "CREATE PUBLICATION " + pub
		if len(tables) > 0 {
			ddl += " FOR TABLE " + quoteTables(tables)
		}
		if _, err := conn.Exec(ctx, ddl); err != nil {
			if len(tables) > 0 && isInsufficientPrivilege(err) {
				return fmt.Errorf("create publication %s: %w (fix: PostgreSQL lets only a table's owner publish it; as the owner of the mapped tables run CREATE PUBLICATION %s FOR TABLE %s; ALTER PUBLICATION %s OWNER TO %s (a role with CREATE on the database); scoop then uses it)",
					s.cfg.Publication, err, pub, quoteTables(tables), pub, schema.QuoteIdent(conn.Config().User))
			}
			return fmt.Errorf("create publication %s: %w", s.cfg.Publication, err)
		}
		s.log.Info("created publication", "publication", s.cfg.Publication, "tables", len(tables))
		return nil
	}
	rows, err := conn.Query(ctx, `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1`, s.cfg.Publication)
	if err != nil {
		return fmt.Errorf("read publication tables: %w", err)
	}
	current := map[TableName]bool{}
	for rows.Next() {
		var t TableName
		if err := rows.Scan(&t.Schema, &t.Name); err != nil {
			rows.Close()
			return fmt.Errorf("read publication tables: %w", err)
		}
		current[t] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read publication tables: %w", err)
	}
	var add, drop []TableName
	for _, t := range tables {
		if !current[t] {
			add = append(add, t)
		}
	}
	for t := range current {
		if !s.tables[t] {
			drop = append(drop, t)
		}
	}
	if len(add) > 0 {
		if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+pub+" ADD TABLE "+quoteTables(add)); err != nil {
			if isInsufficientPrivilege(err) {
				return fmt.Errorf("add tables to publication %s: %w (fix: PostgreSQL lets only a table's owner publish it; as the owner of the tables run ALTER PUBLICATION %s ADD TABLE %s)",
					s.cfg.Publication, err, pub, quoteTables(add))
			}
			return fmt.Errorf("add tables to publication %s: %w", s.cfg.Publication, err)
		}
		s.log.Info("added tables to publication", "tables", fmt.Sprint(add))
	}
	if len(drop) > 0 {
		if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+pub+" DROP TABLE "+quoteTables(drop)); err != nil {
			return fmt.Errorf("drop tables from publication %s: %w", s.cfg.Publication, err)
		}
		for _, t := range drop {
			if _, err := conn.Exec(ctx, `DELETE FROM scoop.source_tables WHERE slot = $1 AND schema_name = $2 AND table_name = $3`, s.cfg.Slot, t.Schema, t.Name); err != nil {
				return fmt.Errorf("forget snapshot of %s: %w", t, err)
			}
		}
		s.log.Info("dropped tables from publication", "tables", fmt.Sprint(drop))
	}
	return nil
}

// heartbeat writes a small non-transactional message to the WAL on a
// schedule. It reaches scoop through pgoutput (messages option), so the slot
// advances even when no mapped table changes while other tables are busy.
func (s *Source) heartbeat(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if conn == nil || conn.IsClosed() {
			c, err := connect(ctx, s.cfg.URL)
			if err != nil {
				s.log.Warn("heartbeat: connect failed; retrying at next beat", "error", err)
				continue
			}
			conn = c
		}
		if _, err := conn.Exec(ctx, `SELECT pg_logical_emit_message(false, 'scoop-heartbeat', now()::text)`); err != nil {
			s.log.Warn("heartbeat failed; retrying at next beat", "error", err)
			conn.Close(context.Background())
			conn = nil
			continue
		}
		var retained int64
		if err := conn.QueryRow(ctx, `SELECT COALESCE((pg_current_wal_lsn() - restart_lsn)::int8, 0) FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&retained); err == nil {
			s.stats.RetainedWAL.Store(retained)
		}
	}
}

// isInsufficientPrivilege: PostgreSQL refused for want of a privilege or
// ownership (SQLSTATE 42501).
func isInsufficientPrivilege(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42501"
}
