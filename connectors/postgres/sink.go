package postgres

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// SinkConfig configures a mapping's PostgreSQL sink.
type SinkConfig struct {
	URL     string
	Schema  string // target schema (default public)
	Mapping string
	// Group keys the stored progress: the consumer group of the mapping's
	// generation (a replay starts a new one). Defaults to Mapping.
	Group  string
	Topic  string
	Target pipeline.Target
	// Method is how rows are written: MethodCopy (default) or MethodInsert.
	Method string
	// Origin is the replication origin the sink's session applies under, so
	// a scoop source reading this database never captures these writes
	// (default "scoop").
	Origin string
	// NoOrigin applies without a replication origin (a reverse flow into
	// the monolith: the forward source must capture these writes for the
	// table's other mappings); Conflict.Tag marks them instead.
	NoOrigin bool
	// Conflict, for a mapping with direction: both, applies a change only
	// if it is newer than the row's last write (see lww.go).
	Conflict *Conflict
	// Existing: the target table is the monolith's; it must exist and is
	// never created or altered.
	Existing bool
	Logger   *slog.Logger
}

// Write methods of the PostgreSQL sink (SCOOP_PG_SINK_METHOD).
const (
	// MethodCopy collapses a batch to the last change per key, COPYs the
	// upserted rows into a session-local staging table and merges them with
	// one INSERT ... SELECT ... ON CONFLICT; deletes are pipelined statements.
	MethodCopy = "copy"
	// MethodInsert pipelines one INSERT ... ON CONFLICT or DELETE per change.
	MethodInsert = "insert"
)

// Sink applies changes to a PostgreSQL table. Each batch is one
// transaction that also records the Kafka offsets it consumed in
// scoop.sink_offsets; changes at or below a recorded offset are skipped, so
// redelivery after a crash has no effect (exactly-once in effect).
type Sink struct {
	cfg   SinkConfig
	conn  *pgx.Conn
	table string // quoted schema.table
	cols  map[string]pipeline.Column
	keys  []pipeline.Column
	names []string // the target's columns, sorted (as WrittenColumns lists them)
	// staged: the session's staging table exists (reset on reconnect).
	staged bool
	// stageUsed: the current transaction copied rows into the staging
	// table (it starts empty: ON COMMIT DELETE ROWS, and a rollback takes
	// the rows with it).
	stageUsed bool
}

// NewSink connects, sets the replication origin up, and creates the target
// table (or checks an existing one).
func NewSink(ctx context.Context, cfg SinkConfig) (*Sink, error) {
	if cfg.Schema == "" {
		cfg.Schema = "public"
	}
	if cfg.Origin == "" {
		cfg.Origin = "scoop"
	}
	if cfg.Group == "" {
		cfg.Group = cfg.Mapping
	}
	switch cfg.Method {
	case "":
		cfg.Method = MethodCopy
	case MethodCopy, MethodInsert:
	default:
		return nil, fmt.Errorf("mapping %s: unknown PostgreSQL write method %q (SCOOP_PG_SINK_METHOD): use copy or insert", cfg.Mapping, cfg.Method)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sink{cfg: cfg, table: schema.QuoteQualified(cfg.Schema, cfg.Target.Table), cols: map[string]pipeline.Column{}}
	for _, c := range cfg.Target.Columns {
		if err := schema.CheckIdent(c.Name); err != nil {
			return nil, fmt.Errorf("mapping %s: %w", cfg.Mapping, err)
		}
		s.cols[c.Name] = c
	}
	for n := range s.cols {
		s.names = append(s.names, n)
	}
	sort.Strings(s.names)
	s.keys = cfg.Target.KeyColumns()
	if len(s.keys) == 0 {
		return nil, fmt.Errorf("mapping %s: target %s has no key column", cfg.Mapping, cfg.Target.Table)
	}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	if err := s.ensureTable(ctx); err != nil {
		s.conn.Close(context.Background())
		return nil, err
	}
	if cfg.Conflict != nil {
		if err := s.prepareConflict(ctx); err != nil {
			s.conn.Close(context.Background())
			return nil, err
		}
	}
	return s, nil
}

// originPoolSize bounds the replication origins scoop's sinks use in one
// database: PostgreSQL 15 lets one session at a time use an origin, so each
// sink session takes the first free one of scoop, scoop_1 ... scoop_15.
const originPoolSize = 16

func (s *Sink) connect(ctx context.Context) error {
	conn, err := connect(ctx, s.cfg.URL)
	if err != nil {
		return err
	}
	if s.cfg.Conflict != nil {
		s.yieldDeadlocks(ctx, conn)
	}
	if s.cfg.NoOrigin {
		s.conn = conn
		s.staged = false
		return nil
	}
	for i := 0; i < originPoolSize; i++ {
		name := s.cfg.Origin
		if i > 0 {
			name = fmt.Sprintf("%s_%d", s.cfg.Origin, i)
		}
		if err := prepare(ctx, conn, fmt.Sprintf("mapping %s: create replication origin %q (needs superuser or EXECUTE on pg_replication_origin_create)", s.cfg.Mapping, name),
			`SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`, name); err != nil {
			conn.Close(context.Background())
			return err
		}
		_, err := conn.Exec(ctx, `SELECT pg_replication_origin_session_setup($1)`, name)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" {
			continue // in use by another sink session
		}
		if err != nil {
			conn.Close(context.Background())
			return fmt.Errorf("mapping %s: set up replication origin %q (needs superuser or EXECUTE on pg_replication_origin_session_setup): %w", s.cfg.Mapping, name, err)
		}
		s.conn = conn
		s.staged = false
		return nil
	}
	conn.Close(context.Background())
	return fmt.Errorf("mapping %s: all %d replication origins %s..%s_%d are in use; stop other sink sessions or raise the pool", s.cfg.Mapping, originPoolSize, s.cfg.Origin, s.cfg.Origin, originPoolSize-1)
}

func (s *Sink) ensureTable(ctx context.Context) error {
	err := prepare(ctx, s.conn, "mapping "+s.cfg.Mapping+": create scoop.sink_offsets", `
		CREATE SCHEMA IF NOT EXISTS scoop;
		CREATE TABLE IF NOT EXISTS scoop.sink_offsets (
			mapping   text   NOT NULL,
			topic     text   NOT NULL,
			partition int    NOT NULL,
			"offset"  bigint NOT NULL,
			commit_lsn bigint NOT NULL DEFAULT 0,
			lsn       bigint NOT NULL DEFAULT 0,
			PRIMARY KEY (mapping, topic, partition));
		ALTER TABLE scoop.sink_offsets
			ADD COLUMN IF NOT EXISTS commit_lsn bigint NOT NULL DEFAULT 0,
			ADD COLUMN IF NOT EXISTS lsn bigint NOT NULL DEFAULT 0`)
	if err != nil {
		return err
	}
	existing, err := s.targetColumns(ctx)
	if err != nil {
		return err
	}
	if s.cfg.Existing {
		var missing []string
		for _, c := range s.cfg.Target.Columns {
			if _, ok := existing[c.Name]; !ok {
				missing = append(missing, c.Name)
			}
		}
		if len(existing) == 0 {
			return fmt.Errorf("mapping %s: table %s does not exist", s.cfg.Mapping, s.table)
		}
		if len(missing) > 0 {
			return fmt.Errorf("mapping %s: %w: table %s has no column %s", s.cfg.Mapping, pipeline.ErrSchemaMismatch, s.table, strings.Join(missing, ", "))
		}
		return nil
	}
	if len(existing) == 0 {
		var defs, keys []string
		for _, c := range s.cfg.Target.Columns {
			d := schema.QuoteIdent(c.Name) + " " + c.SQLType
			if c.NotNull || c.Key {
				d += " NOT NULL"
			}
			defs = append(defs, d)
			if c.Key {
				keys = append(keys, schema.QuoteIdent(c.Name))
			}
		}
		ddl := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s, PRIMARY KEY (%s))", s.table, strings.Join(defs, ", "), strings.Join(keys, ", "))
		// Instances consuming one group start together: the same race.
		if err := prepare(ctx, s.conn, "mapping "+s.cfg.Mapping+": create target table", ddl); err != nil {
			return err
		}
		s.cfg.Logger.Info("created target table", "mapping", s.cfg.Mapping, "table", s.cfg.Target.Table)
		return nil
	}
	return s.evolveTable(ctx, existing)
}

// targetColumn is a column of the existing target table.
type targetColumn struct {
	typ        string // format_type
	notNull    bool
	hasDefault bool
	primary    bool // in the primary key
}

func (s *Sink) targetColumns(ctx context.Context) (map[string]targetColumn, error) {
	existing := map[string]targetColumn{}
	rows, err := s.conn.Query(ctx, `
		SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef,
		       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY(i.indkey))
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, s.cfg.Schema, s.cfg.Target.Table)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: read target table: %w", s.cfg.Mapping, err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		var c targetColumn
		if err := rows.Scan(&n, &c.typ, &c.notNull, &c.hasDefault, &c.primary); err != nil {
			return nil, fmt.Errorf("mapping %s: read target table: %w", s.cfg.Mapping, err)
		}
		existing[n] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mapping %s: read target table: %w", s.cfg.Mapping, err)
	}
	return existing, nil
}

// evolveTable brings an existing target table to the source's columns:
// columns the source gained are added (nullable: the rows already there have
// no value); target columns the source lost stop being written, so a NOT
// NULL without a default on them is dropped (inserts would fail). A type the
// target column cannot hold, or a missing key column, is refused with the
// statement that fixes it (ErrSchemaMismatch).
func (s *Sink) evolveTable(ctx context.Context, existing map[string]targetColumn) error {
	var problems, adds []string
	for _, c := range s.cfg.Target.Columns {
		got, ok := existing[c.Name]
		switch {
		case !ok && c.Key:
			problems = append(problems, fmt.Sprintf("key column %q is missing (the primary key changed: map the table to a new target)", c.Name))
		case !ok:
			adds = append(adds, "ADD COLUMN IF NOT EXISTS "+schema.QuoteIdent(c.Name)+" "+c.SQLType)
		case got.typ != c.SQLType && !compatibleTypes(c.SQLType, got.typ):
			problems = append(problems, fmt.Sprintf("column %q is %s but the source is %s (fix: ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::%s, or convert it in the mapping with columns.types)",
				c.Name, got.typ, c.SQLType, s.table, schema.QuoteIdent(c.Name), c.SQLType, schema.QuoteIdent(c.Name), c.SQLType))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("mapping %s: %w: table %s: %s", s.cfg.Mapping, pipeline.ErrSchemaMismatch, s.table, strings.Join(problems, "; "))
	}
	var names []string
	for n := range existing {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if c := existing[n]; c.notNull && !c.hasDefault && !c.primary && s.cols[n].Name == "" {
			adds = append(adds, "ALTER COLUMN "+schema.QuoteIdent(n)+" DROP NOT NULL")
		}
	}
	if len(adds) == 0 {
		return nil
	}
	ddl := "ALTER TABLE " + s.table + " " + strings.Join(adds, ", ")
	if _, err := s.conn.Exec(ctx, ddl); err != nil {
		return fmt.Errorf("mapping %s: follow the source's columns (%s): %w", s.cfg.Mapping, ddl, err)
	}
	s.cfg.Logger.Info("target table follows the source's columns", "mapping", s.cfg.Mapping, "table", s.cfg.Target.Table, "ddl", ddl)
	return nil
}

// compatibleTypes accepts widening of the same family (varchar(n) -> text,
// int4 -> int8, numeric(p,s) -> numeric).
func compatibleTypes(src, dst string) bool {
	family := func(t string) string {
		switch {
		case strings.HasPrefix(t, "character varying"), t == "text", strings.HasPrefix(t, "character("):
			return "text"
		case t == "smallint", t == "integer", t == "bigint", strings.HasPrefix(t, "numeric"):
			return "number"
		case t == "json", t == "jsonb":
			return "json"
		}
		return t
	}
	return family(src) == family(dst) && (dst == "text" || dst == "bigint" || dst == "numeric" || dst == "jsonb" || src == dst)
}

// Apply writes a batch in one transaction with its offsets.
func (s *Sink) Apply(ctx context.Context, batch []pipeline.Change) error {
	if err := pipeline.CheckColumns(batch, s.cols); err != nil {
		return fmt.Errorf("mapping %s: %w", s.cfg.Mapping, err)
	}
	if len(batch) == 0 {
		return nil
	}
	if s.conn == nil || s.conn.IsClosed() {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		if s.cfg.Conflict != nil {
			if err := s.beginConflict(ctx, tx); err != nil {
				return err
			}
		}
		s.stageUsed = false
		done, err := s.readProgress(ctx, tx, batch)
		if err != nil {
			return err
		}
		high := map[int]progress{}
		apply := make([]pipeline.Change, 0, len(batch))
		for i := range batch {
			c := &batch[i]
			p, seen := done[c.Partition]
			if seen && c.Offset <= p.offset {
				continue // this record was applied before a crash
			}
			// Only the exact record is recognised as applied: a change the
			// source repeated after a crash, or that a failed Kafka write
			// left out of order, is applied again in log order, which
			// converges (see pipeline/doc.go). Skipping by source position
			// across keys dropped changes that were never applied.
			apply = append(apply, *c)
			p.offset = c.Offset
			if c.CommitLSN != 0 {
				p.commitLSN, p.lsn = c.CommitLSN, c.LSN
			}
			done[c.Partition] = p
			high[c.Partition] = p
		}
		// Record the source position and commit time with the origin: the
		// commit then carries the monolith's commit time (with
		// track_commit_timestamp) and pg_replication_origin_progress shows
		// how far this store is.
		// Queued first in the batch sent with the rows (one round trip
		// less): it only has to precede the commit.
		var b pgx.Batch
		if last := lastStreamed(apply); last != nil && !s.cfg.NoOrigin {
			b.Queue(`SELECT pg_replication_origin_xact_setup($1::pg_lsn, $2)`, formatLSN(last.CommitLSN), last.CommitTime).Fn = func(br pgx.BatchResults) error {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("mapping %s: set the origin's commit position (needs superuser or EXECUTE on pg_replication_origin_xact_setup): %w", s.cfg.Mapping, err)
				}
				return nil
			}
		}
		if s.cfg.Conflict != nil {
			for i := range apply {
				if err := s.queueConflict(&b, &apply[i]); err != nil {
					return pipeline.Permanent(fmt.Errorf("offset %d/%d: %w", apply[i].Partition, apply[i].Offset, err))
				}
			}
		} else if s.cfg.Method == MethodInsert {
			for i := range apply {
				if err := s.queue(&b, &apply[i]); err != nil {
					return pipeline.Permanent(fmt.Errorf("offset %d/%d: %w", apply[i].Partition, apply[i].Offset, err))
				}
			}
		} else if err := s.applyCopy(ctx, tx, &b, pipeline.Collapse(apply)); err != nil {
			return err
		}
		parts := make([]int, 0, len(high))
		for p := range high {
			parts = append(parts, p)
		}
		sort.Ints(parts)
		for _, p := range parts {
			h := high[p]
			b.Queue(`INSERT INTO scoop.sink_offsets (mapping, topic, partition, "offset", commit_lsn, lsn) VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (mapping, topic, partition) DO UPDATE SET "offset" = GREATEST(scoop.sink_offsets."offset", EXCLUDED."offset"),
				commit_lsn = EXCLUDED.commit_lsn, lsn = EXCLUDED.lsn`,
				s.cfg.Group, s.cfg.Topic, p, h.offset, int64(h.commitLSN), int64(h.lsn))
		}
		if b.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		// A rolled-back transaction takes the staging table with it when
		// it created it: create it again next time (IF NOT EXISTS).
		s.staged = false
		return classify(err)
	}
	return nil
}

func lastStreamed(changes []pipeline.Change) *pipeline.Change {
	for i := len(changes) - 1; i >= 0; i-- {
		if changes[i].CommitLSN != 0 {
			return &changes[i]
		}
	}
	return nil
}

func formatLSN(lsn uint64) string { return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)) }

// progress is what a sink has applied of one partition: the Kafka offset,
// and the source position (commit LSN, LSN) of the last streamed change
// (kept for operators; nothing is skipped by it).
type progress struct {
	offset         int64
	commitLSN, lsn uint64
}

// readProgress locks and reads what the group has applied of the batch's
// partitions. A partition's row is created first if missing (offset -1):
// two instances applying the same partition around a rebalance then
// serialize on that row, and the later one sees what the earlier one
// committed, instead of both finding no row and applying overlapping
// batches (a row could go back to an older version).
func (s *Sink) readProgress(ctx context.Context, tx pgx.Tx, batch []pipeline.Change) (map[int]progress, error) {
	var parts []int32
	seen := map[int]bool{}
	for i := range batch {
		if p := batch[i].Partition; !seen[p] {
			seen[p] = true
			parts = append(parts, int32(p))
		}
	}
	// Both statements in one round trip.
	var b pgx.Batch
	b.Queue(`INSERT INTO scoop.sink_offsets (mapping, topic, partition, "offset") SELECT $1, $2, p, -1 FROM unnest($3::int[]) p ON CONFLICT DO NOTHING`, s.cfg.Group, s.cfg.Topic, parts)
	b.Queue(`SELECT partition, "offset", commit_lsn, lsn FROM scoop.sink_offsets WHERE mapping = $1 AND topic = $2 AND partition = ANY($3) FOR UPDATE`, s.cfg.Group, s.cfg.Topic, parts)
	br := tx.SendBatch(ctx, &b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("create sink offsets: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("read sink offsets: %w", err)
	}
	defer rows.Close()
	done := map[int]progress{}
	for rows.Next() {
		var part int
		var off, commitLSN, lsn int64
		if err := rows.Scan(&part, &off, &commitLSN, &lsn); err != nil {
			return nil, fmt.Errorf("read sink offsets: %w", err)
		}
		done[part] = progress{offset: off, commitLSN: uint64(commitLSN), lsn: uint64(lsn)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read sink offsets: %w", err)
	}
	rows.Close()
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("read sink offsets: %w", err)
	}
	return done, nil
}

// classify marks errors that retrying cannot fix as permanent: cardinality
// violations (class 21, e.g. one merge touching a row twice), bad data (22),
// constraint violations (23), undefined or mistyped objects (42). The
// consumer then bisects the batch and dead-letters what cannot be applied.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "21", "22", "23", "42":
			return pipeline.Permanent(err)
		}
	}
	return err
}

// queue adds the statement for one change.
func (s *Sink) queue(b *pgx.Batch, c *pipeline.Change) error {
	switch c.Op {
	case schema.OpTruncate:
		b.Queue("TRUNCATE " + s.table)
		return nil
	case schema.OpDelete:
		where := make([]string, len(s.keys))
		args := make([]any, len(s.keys))
		for i, k := range s.keys {
			where[i] = fmt.Sprintf("%s = $%d", schema.QuoteIdent(k.Name), i+1)
			v, err := pgText(k, c.Key[k.Name])
			if err != nil {
				return err
			}
			args[i] = v
		}
		b.Queue("DELETE FROM "+s.table+" WHERE "+strings.Join(where, " AND "), args...)
		return nil
	}
	names := c.WrittenColumns(s.cols)
	cols := make([]string, len(names))
	params := make([]string, len(names))
	args := make([]any, len(names))
	var set []string
	for i, n := range names {
		col := s.cols[n]
		cols[i] = schema.QuoteIdent(n)
		params[i] = fmt.Sprintf("$%d", i+1)
		v, err := pgText(col, c.After[n])
		if err != nil {
			return fmt.Errorf("column %q: %w", n, err)
		}
		args[i] = v
		if !col.Key {
			set = append(set, cols[i]+" = EXCLUDED."+cols[i])
		}
	}
	keys := make([]string, len(s.keys))
	for i, k := range s.keys {
		keys[i] = schema.QuoteIdent(k.Name)
	}
	sql := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO ", s.table, strings.Join(cols, ", "), strings.Join(params, ", "), strings.Join(keys, ", "))
	if len(set) == 0 {
		sql += "NOTHING"
	} else {
		sql += "UPDATE SET " + strings.Join(set, ", ")
	}
	b.Queue(sql, args...)
	return nil
}

// Close ends the session.
func (s *Sink) Close(ctx context.Context) error {
	if s.conn == nil {
		return nil
	}
	return s.conn.Close(ctx)
}

// pgText turns an event's JSON value into PostgreSQL text input for col
// (nil for NULL).
func pgText(col pipeline.Column, raw json.RawMessage) (any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	raw, err := col.EventValue(raw) // Debezium's temporal numbers as text
	if err != nil {
		return nil, err
	}
	if col.Array {
		var v any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		var sb strings.Builder
		if err := writeArray(&sb, col.Elem, v); err != nil {
			return nil, err
		}
		return sb.String(), nil
	}
	return scalarText(col.BaseType, raw)
}

func scalarText(base string, raw json.RawMessage) (string, error) {
	switch raw[0] {
	case '"':
		if base != "bytea" && bytes.IndexByte(raw, '\\') < 0 {
			return string(raw[1 : len(raw)-1]), nil // nothing escaped
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		if base == "bytea" {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return "", fmt.Errorf("bytea: %w", err)
			}
			return `\x` + hex.EncodeToString(b), nil
		}
		return s, nil
	default: // number, bool, object, array (json columns)
		return string(raw), nil
	}
}

// writeArray renders a JSON array as a PostgreSQL array literal.
func writeArray(sb *strings.Builder, elem string, v any) error {
	arr, ok := v.([]any)
	if !ok {
		return fmt.Errorf("expected a JSON array, got %T", v)
	}
	sb.WriteByte('{')
	for i, e := range arr {
		if i > 0 {
			sb.WriteByte(',')
		}
		switch e := e.(type) {
		case nil:
			sb.WriteString("NULL")
		case []any:
			if err := writeArray(sb, elem, e); err != nil {
				return err
			}
		default:
			raw, _ := json.Marshal(e)
			text, err := scalarText(elem, raw)
			if err != nil {
				return err
			}
			sb.WriteByte('"')
			sb.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(text))
			sb.WriteByte('"')
		}
	}
	sb.WriteByte('}')
	return nil
}
