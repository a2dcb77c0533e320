package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SlotState is the server's view of a replication slot, read by the
// daemon's monitor on its own timer (not by the source, so it is fresh
// while the source is down).
type SlotState struct {
	Exists       bool
	Active       bool   // a walsender streams from it
	CurrentLSN   uint64 // pg_current_wal_lsn()
	RestartLSN   uint64 // WAL from here on is kept for the slot
	ConfirmedLSN uint64 // confirmed_flush_lsn: everything before is in Kafka
	// WALStatus is pg_replication_slots.wal_status: reserved, extended,
	// unreserved (PostgreSQL may remove WAL the slot needs at the next
	// checkpoint: max_slot_wal_keep_size is exceeded) or lost.
	WALStatus string
	// Snapshotted holds the tables whose snapshot is done (nil when the
	// scoop schema does not exist yet).
	Snapshotted map[TableName]bool
	ReadAt      time.Time
}

// RetainedWAL is the WAL in bytes the server keeps for the slot.
func (s SlotState) RetainedWAL() int64 {
	if s.CurrentLSN > s.RestartLSN && s.RestartLSN > 0 {
		return int64(s.CurrentLSN - s.RestartLSN)
	}
	return 0
}

// SlotMonitor reads a slot's state over one connection, reopened after a
// failure. It is used by one goroutine.
type SlotMonitor struct {
	url, slot string
	conn      *pgx.Conn
}

// NewSlotMonitor returns a monitor of slot in the database at url.
func NewSlotMonitor(url, slot string) *SlotMonitor { return &SlotMonitor{url: url, slot: slot} }

// Read returns the slot's state now.
func (m *SlotMonitor) Read(ctx context.Context) (SlotState, error) {
	if m.conn == nil || m.conn.IsClosed() {
		c, err := connect(ctx, m.url)
		if err != nil {
			return SlotState{}, fmt.Errorf("read state of slot %s: %w", m.slot, err)
		}
		m.conn = c
	}
	st, err := m.read(ctx)
	if err != nil {
		m.conn.Close(context.Background())
		m.conn = nil
		return SlotState{}, fmt.Errorf("read state of slot %s: %w", m.slot, err)
	}
	return st, nil
}

func (m *SlotMonitor) read(ctx context.Context) (SlotState, error) {
	st := SlotState{ReadAt: time.Now()}
	var restart, confirmed *int64
	var walStatus *string
	err := m.conn.QueryRow(ctx, `SELECT active, (restart_lsn - '0/0')::int8, (confirmed_flush_lsn - '0/0')::int8, wal_status,
			(pg_current_wal_lsn() - '0/0')::int8
		FROM pg_replication_slots WHERE slot_name = $1`, m.slot).Scan(&st.Active, &restart, &confirmed, &walStatus, &st.CurrentLSN)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if err := m.conn.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0')::int8`).Scan(&st.CurrentLSN); err != nil {
			return st, err
		}
	case err != nil:
		return st, err
	default:
		st.Exists = true
		if restart != nil {
			st.RestartLSN = uint64(*restart)
		}
		if confirmed != nil {
			st.ConfirmedLSN = uint64(*confirmed)
		}
		if walStatus != nil {
			st.WALStatus = *walStatus
		}
	}
	var haveState bool
	if err := m.conn.QueryRow(ctx, `SELECT to_regclass('scoop.source_tables') IS NOT NULL`).Scan(&haveState); err != nil {
		return st, err
	}
	if haveState {
		done, err := snapshottedTables(ctx, m.conn, m.slot)
		if err != nil {
			return st, err
		}
		st.Snapshotted = done
	}
	return st, nil
}

// Close closes the monitor's connection.
func (m *SlotMonitor) Close() {
	if m.conn != nil {
		m.conn.Close(context.Background())
		m.conn = nil
	}
}

// heartbeatPrefix names the heartbeat messages (written by
// Source.heartbeat); their content is the source's now()::text, the clock
// the lag is measured against while idle.
const heartbeatPrefix = "scoop-heartbeat"

// heartbeatTime reads a heartbeat's content (a timestamptz as text).
func heartbeatTime(content []byte) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05.999999-07:00:00"} {
		if t, err := time.Parse(layout, string(content)); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
