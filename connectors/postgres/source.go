package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// SourceConfig configures the monolith source.
type SourceConfig struct {
	URL         string
	Slot        string
	Publication string
	// Origin is the replication origin of scoop's own writes; transactions
	// carrying it are not captured (default "scoop").
	Origin string
	Tables []TableName
	// Topic names the topic of a table.
	Topic func(schemaName, table string) string
	// Encoder settings for the change events (Database is filled in).
	Encoding schema.EncoderConfig
	// HeartbeatInterval: how often a heartbeat message is written to the WAL
	// so the slot advances while the mapped tables are idle (default 10s;
	// negative disables).
	HeartbeatInterval time.Duration
	// StatusInterval: how often the flushed position is reported (default 5s).
	StatusInterval time.Duration
	// SnapshotWorkers read tables in parallel (default 2).
	SnapshotWorkers int
	// SnapshotChunkRows is the rows per primary-key range (default 10000).
	SnapshotChunkRows int
	Logger            *slog.Logger
	// Stats, when set, is shared with earlier runs of the source.
	Stats *SourceStats
	// Budget, when set, bounds the bytes of records handed to the forwarder.
	Budget *pipeline.Budget
	// NoSnapshot streams changes from the slot's creation only: no table
	// is copied (a reverse flow's service tables came from the monolith).
	NoSnapshot bool
}

var slotNameRe = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Validate names the field at fault and fills defaults.
func (c *SourceConfig) Validate() error {
	if c.URL == "" {
		return errors.New("source: no URL (set SCOOP_SOURCE_URL, e.g. postgres://scoop@db:5432/monolith)")
	}
	if !slotNameRe.MatchString(c.Slot) {
		return fmt.Errorf("source: slot name %q is invalid (SCOOP_SLOT): use 1-63 lower-case letters, digits or _", c.Slot)
	}
	if err := schema.CheckIdent(c.Publication); err != nil {
		return fmt.Errorf("source: publication name (SCOOP_PUBLICATION): %w", err)
	}
	if c.Origin == "" {
		c.Origin = "scoop"
	}
	if c.Topic == nil {
		return errors.New("source: no topic naming function")
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 10 * time.Second
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = 5 * time.Second
	}
	if c.SnapshotWorkers <= 0 {
		c.SnapshotWorkers = 2
	}
	if c.SnapshotChunkRows <= 0 {
		c.SnapshotChunkRows = 10000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Source streams the monolith's changes. Create it with NewSource, run it
// with Run, and call Ack with the marks the forwarder has delivered.
type Source struct {
	cfg    SourceConfig
	log    *slog.Logger
	acked  atomic.Uint64
	tables map[TableName]bool
	types  schema.TypeMap
	stats  *SourceStats
	marks  watermarks
	// Used by the stream loop only.
	catalog  *catalog
	keyOrder *pipeline.KeyCounter
}

// SourceStats are counters for metrics and status.
type SourceStats struct {
	// Leading: this instance holds the slot's lease and runs the source
	// (set by the daemon; see Lease).
	Leading      atomic.Bool
	Events       atomic.Uint64
	SnapshotRows atomic.Uint64
	Snapshots    SnapshotProgress
	ReceivedLSN  atomic.Uint64
	LastCommit   atomic.Int64 // unix ms of the last commit seen
	RetainedWAL  atomic.Int64 // bytes of WAL the slot holds back (checked at each heartbeat)
	// LastHeartbeat is the source's clock (unix ms) in the last heartbeat
	// received: while the tables are idle, the stream is current up to it.
	LastHeartbeat atomic.Int64
	// LastReceived is this host's clock (unix ms) when the last commit or
	// heartbeat arrived.
	LastReceived atomic.Int64
}

// NewSource validates cfg.
func NewSource(cfg SourceConfig) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, log: cfg.Logger.With("component", "source", "slot", cfg.Slot), tables: map[TableName]bool{}, stats: cfg.Stats}
	if s.stats == nil {
		s.stats = &SourceStats{}
	}
	for _, t := range cfg.Tables {
		s.tables[t] = true
	}
	return s, nil
}

// handOver passes an item to the forwarder, within the byte budget.
func (s *Source) handOver(ctx context.Context, out chan<- pipeline.Item, it pipeline.Item) error {
	if it.Record != nil {
		if err := s.cfg.Budget.Acquire(ctx, it.Record.Size()); err != nil {
			return err
		}
	}
	select {
	case out <- it:
		return nil
	case <-ctx.Done():
		if it.Record != nil {
			s.cfg.Budget.Release(it.Record.Size())
		}
		return ctx.Err()
	}
}

// Stats exposes the source's counters.
func (s *Source) Stats() *SourceStats { return s.stats }

// Ack records that everything before lsn is durably in Kafka. The slot's
// flushed position is moved to it on the next status update.
func (s *Source) Ack(lsn uint64) {
	for {
		cur := s.acked.Load()
		if lsn <= cur || s.acked.CompareAndSwap(cur, lsn) {
			return
		}
	}
}

// Acked is the position the slot may be confirmed to.
func (s *Source) Acked() uint64 { return s.acked.Load() }

// Run prepares the publication and slot, snapshots tables that need it and
// streams until ctx ends or an error stops it. It does not close out: the
// daemon restarts sources on the same channel when mappings change.
func (s *Source) Run(ctx context.Context, out chan<- pipeline.Item) error {
	conn, err := connect(ctx, s.cfg.URL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := checkServer(ctx, conn); err != nil {
		return err
	}
	if s.types, err = loadTypes(ctx, conn); err != nil {
		return err
	}
	var dbName string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&dbName); err != nil {
		return fmt.Errorf("read database name: %w", err)
	}
	s.cfg.Encoding.Database = dbName
	described := make(map[TableName]*schema.Table, len(s.cfg.Tables))
	for _, t := range s.cfg.Tables {
		d, err := describeTable(ctx, conn, t)
		if err != nil {
			return err
		}
		described[t] = d
	}
	if err := ensureStateTables(ctx, conn); err != nil {
		return err
	}
	if err := s.syncPublication(ctx, conn); err != nil {
		return err
	}

	repl, err := connectReplication(ctx, s.cfg.URL)
	if err != nil {
		return err
	}
	defer repl.Close(context.Background())

	start, pending, err := s.prepareSlot(ctx, conn, repl, described, out)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	streamCtx, stopStream := context.WithCancel(gctx)
	defer stopStream()
	if s.cfg.HeartbeatInterval > 0 {
		go s.heartbeat(streamCtx)
	}
	if len(pending) > 0 {
		g.Go(func() error { return s.incrementalSnapshot(streamCtx, pending) })
	}
	g.Go(func() error { return s.stream(streamCtx, repl, start, out) })
	return g.Wait()
}

// prepareSlot makes sure the slot exists and every mapped table has been
// snapshotted; it returns the LSN to stream from.
func (s *Source) prepareSlot(ctx context.Context, conn *pgx.Conn, repl *pgconn.PgConn, tables map[TableName]*schema.Table, out chan<- pipeline.Item) (pglogrepl.LSN, []*schema.Table, error) {
	var walStatus, confirmed *string
	err := conn.QueryRow(ctx, `SELECT wal_status, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&walStatus, &confirmed)
	slotExists := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, fmt.Errorf("read slot %s: %w", s.cfg.Slot, err)
	}
	done, err := snapshottedTables(ctx, conn, s.cfg.Slot)
	if err != nil {
		return 0, nil, err
	}
	// Whether the slot's initial snapshot completed is recorded per slot:
	// a replay --snapshot of every table empties done, never this.
	completed, err := slotSnapshotted(ctx, conn, s.cfg.Slot)
	if err != nil {
		return 0, nil, err
	}
	if slotExists && walStatus != nil && *walStatus == "lost" {
		return 0, nil, fmt.Errorf("%w: replication slot %q was invalidated (wal_status = lost): the WAL it needed is gone and changes since its last confirmed position cannot be recovered. Scoop will not silently recreate it. To start over with a fresh snapshot: SELECT pg_drop_replication_slot('%s'); DELETE FROM scoop.source_tables WHERE slot = '%s'; DELETE FROM scoop.source_slots WHERE slot = '%s'; then restart scoop (consider raising max_slot_wal_keep_size)",
			ErrPrecondition, s.cfg.Slot, s.cfg.Slot, s.cfg.Slot, s.cfg.Slot)
	}
	if !slotExists && completed {
		return 0, nil, fmt.Errorf("%w: replication slot %q is missing although its tables were snapshotted before (was it dropped, or did the database fail over?); changes since then cannot be recovered. To start over with a fresh snapshot: DELETE FROM scoop.source_tables WHERE slot = '%s'; DELETE FROM scoop.source_slots WHERE slot = '%s'; then restart scoop",
			ErrPrecondition, s.cfg.Slot, s.cfg.Slot, s.cfg.Slot)
	}
	if slotExists && !completed {
		// A slot whose initial snapshot never completed: nothing was
		// confirmed past its start, so it is safe to begin again.
		s.log.Info("dropping slot whose initial snapshot did not complete; starting over")
		if err := pglogrepl.DropReplicationSlot(ctx, repl, s.cfg.Slot, pglogrepl.DropReplicationSlotOptions{Wait: true}); err != nil {
			return 0, nil, fmt.Errorf("drop incomplete slot %s: %w", s.cfg.Slot, err)
		}
		slotExists = false
	}
	if !slotExists && s.cfg.NoSnapshot {
		point, _, err := s.createSlot(ctx, repl, "NOEXPORT_SNAPSHOT")
		if err != nil {
			return 0, nil, err
		}
		s.log.Info("created replication slot (no snapshot)", "consistent_point", point.String())
		s.acked.Store(uint64(point))
		if err := markSlotSnapshotted(ctx, conn, s.cfg.Slot, s.cfg.Tables); err != nil {
			return 0, nil, err
		}
		return point, nil, nil
	}
	if !slotExists {
		// Snapshot rows carry a time from before the consistent point, so
		// every streamed change after them is newer (Cassandra's
		// USING TIMESTAMP relies on it).
		var before time.Time
		if err := conn.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&before); err != nil {
			return 0, nil, fmt.Errorf("read server clock: %w", err)
		}
		point, snapshotName, err := s.createSlot(ctx, repl, "EXPORT_SNAPSHOT")
		if err != nil {
			return 0, nil, err
		}
		s.log.Info("created replication slot", "consistent_point", point.String(), "snapshot", snapshotName)
		s.acked.Store(uint64(point))
		list := make([]*schema.Table, 0, len(tables))
		for _, t := range s.cfg.Tables {
			list = append(list, tables[t])
		}
		if err := s.snapshot(ctx, snapshotName, uint64(point), before, list, out); err != nil {
			return 0, nil, err
		}
		if err := s.waitAcked(ctx, uint64(point), out); err != nil {
			return 0, nil, err
		}
		if err := markSlotSnapshotted(ctx, conn, s.cfg.Slot, s.cfg.Tables); err != nil {
			return 0, nil, err
		}
		return point, nil, nil
	}
	start, err := pglogrepl.ParseLSN(*confirmed)
	if err != nil {
		return 0, nil, fmt.Errorf("parse confirmed_flush_lsn %q: %w", *confirmed, err)
	}
	s.acked.Store(uint64(start))
	// Tables mapped since the slot was created are copied by an incremental
	// snapshot while the stream runs (see incremental.go).
	var pending []*schema.Table
	var added []TableName
	for _, t := range s.cfg.Tables {
		if !done[t] {
			pending = append(pending, tables[t])
			added = append(added, t)
		}
	}
	if s.cfg.NoSnapshot && len(added) > 0 {
		// Streamed from now on, never copied.
		if err := markSnapshotted(ctx, conn, s.cfg.Slot, added); err != nil {
			return 0, nil, err
		}
		pending = nil
	}
	return start, pending, nil
}

// createSlot creates the slot (snapshotAction: EXPORT_SNAPSHOT or
// NOEXPORT_SNAPSHOT) and returns its consistent point and exported snapshot.
func (s *Source) createSlot(ctx context.Context, repl *pgconn.PgConn, snapshotAction string) (pglogrepl.LSN, string, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, s.cfg.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: snapshotAction})
	if err != nil {
		return 0, "", fmt.Errorf("create replication slot %s: %w", s.cfg.Slot, err)
	}
	point, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, "", fmt.Errorf("parse consistent point %q: %w", res.ConsistentPoint, err)
	}
	return point, res.SnapshotName, nil
}

// waitAcked waits until the forwarder has published everything sent so far
// (the snapshot's rows are durably in Kafka before it is recorded as done).
func (s *Source) waitAcked(ctx context.Context, mark uint64, out chan<- pipeline.Item) error {
	barrier := make(chan struct{})
	select {
	case out <- pipeline.Item{Mark: mark, Barrier: barrier}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-barrier:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
