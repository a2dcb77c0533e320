package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// stageTable is the session's staging table (temporary, emptied at commit).
const stageTable = "pg_temp.scoop_stage"

// copyThreshold: fewer upserts of one shape than this go as statements.
const copyThreshold = 8

// applyCopy writes a collapsed batch (at most one change per key between
// truncates): upserts of the same column set through COPY and one merge,
// the rest (deletes, truncates, small groups, updates leaving TOAST values
// unchanged) as pipelined statements queued on b, sent after the merges.
// Keys are distinct, so the order between them does not matter; a truncate
// splits the batch and is applied where it stood.
func (s *Sink) applyCopy(ctx context.Context, tx pgx.Tx, b *pgx.Batch, changes []pipeline.Change) error {
	start := 0
	for i := 0; i <= len(changes); i++ {
		if i < len(changes) && changes[i].Op != schema.OpTruncate {
			continue
		}
		if err := s.applySegment(ctx, tx, b, changes[start:i]); err != nil {
			return err
		}
		if i < len(changes) {
			if err := sendBatch(ctx, tx, b); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "TRUNCATE "+s.table); err != nil {
				return fmt.Errorf("truncate %s: %w", s.table, err)
			}
		}
		start = i + 1
	}
	return nil
}

func (s *Sink) applySegment(ctx context.Context, tx pgx.Tx, b *pgx.Batch, changes []pipeline.Change) error {
	groups := map[uint64][]*pipeline.Change{}
	var order []uint64
	var wide []*pipeline.Change // a target of more than 64 columns: as statements
	for i := range changes {
		c := &changes[i]
		if c.Op == schema.OpDelete || len(c.Unchanged) > 0 {
			if err := s.queue(b, c); err != nil {
				return pipeline.Permanent(fmt.Errorf("offset %d/%d: %w", c.Partition, c.Offset, err))
			}
			continue
		}
		if len(s.names) > 64 {
			wide = append(wide, c)
			continue
		}
		// The written columns as a bit per s.names[i] (lookups, cheaper
		// than listing and sorting the event's columns).
		var shape uint64
		for i, n := range s.names {
			if _, ok := c.After[n]; ok {
				shape |= 1 << i
			}
		}
		if _, ok := groups[shape]; !ok {
			order = append(order, shape)
		}
		groups[shape] = append(groups[shape], c)
	}
	for _, shape := range order {
		var names []string
		for i, n := range s.names {
			if shape&(1<<i) != 0 {
				names = append(names, n)
			}
		}
		if err := s.applyGroup(ctx, tx, b, names, groups[shape]); err != nil {
			return err
		}
	}
	for _, c := range wide {
		if err := s.queue(b, c); err != nil {
			return pipeline.Permanent(fmt.Errorf("offset %d/%d: %w", c.Partition, c.Offset, err))
		}
	}
	return nil
}

// applyGroup writes upserts of one column set: through COPY, or as
// statements when they are few.
func (s *Sink) applyGroup(ctx context.Context, tx pgx.Tx, b *pgx.Batch, names []string, group []*pipeline.Change) error {
	if len(group) < copyThreshold {
		for _, c := range group {
			if err := s.queue(b, c); err != nil {
				return pipeline.Permanent(fmt.Errorf("offset %d/%d: %w", c.Partition, c.Offset, err))
			}
		}
		return nil
	}
	return s.copyMerge(ctx, tx, b, names, group)
}

// copyMerge upserts rows of one column set: COPY into the staging table,
// then INSERT ... SELECT ... ON CONFLICT into the target, queued on b (it
// goes with the rest of the batch, one round trip less). A second use of
// the staging table in the transaction first sends b, whose merge reads
// it, and empties it.
func (s *Sink) copyMerge(ctx context.Context, tx pgx.Tx, b *pgx.Batch, names []string, rows []*pipeline.Change) error {
	if err := s.ensureStage(ctx, tx); err != nil {
		return err
	}
	cols := make([]string, len(names))
	var set []string
	for i, n := range names {
		cols[i] = schema.QuoteIdent(n)
		if !s.cols[n].Key {
			set = append(set, cols[i]+" = EXCLUDED."+cols[i])
		}
	}
	list := strings.Join(cols, ", ")
	if s.stageUsed {
		if err := sendBatch(ctx, tx, b); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "TRUNCATE "+stageTable); err != nil {
			return fmt.Errorf("empty the staging table: %w", err)
		}
	}
	s.stageUsed = true
	text := &copyText{s: s, names: names, rows: rows}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, text, "COPY "+stageTable+" ("+list+") FROM STDIN"); err != nil {
		if bad := text.err.Load(); bad != nil {
			return *bad // the value is at fault, not the store: the COPY was abandoned
		}
		return fmt.Errorf("copy %d rows into the staging table: %w", len(rows), err)
	}
	keys := make([]string, len(s.keys))
	for i, k := range s.keys {
		keys[i] = schema.QuoteIdent(k.Name)
	}
	merge := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s ON CONFLICT (%s) DO ", s.table, list, list, stageTable, strings.Join(keys, ", "))
	if len(set) == 0 {
		merge += "NOTHING"
	} else {
		merge += "UPDATE SET " + strings.Join(set, ", ")
	}
	b.Queue(merge).Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("merge %d rows into %s: %w", len(rows), s.table, err)
		}
		return nil
	}
	return nil
}

// sendBatch sends and empties b.
func sendBatch(ctx context.Context, tx pgx.Tx, b *pgx.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	err := tx.SendBatch(ctx, b).Close()
	*b = pgx.Batch{}
	return err
}

// ensureStage creates the session's staging table with the target's columns
// (no constraints: the target checks them on merge).
func (s *Sink) ensureStage(ctx context.Context, tx pgx.Tx) error {
	if s.staged {
		return nil
	}
	defs := make([]string, len(s.cfg.Target.Columns))
	for i, c := range s.cfg.Target.Columns {
		defs[i] = schema.QuoteIdent(c.Name) + " " + c.SQLType
	}
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE IF NOT EXISTS scoop_stage ("+strings.Join(defs, ", ")+") ON COMMIT DELETE ROWS"); err != nil {
		return fmt.Errorf("create the staging table: %w", err)
	}
	s.staged = true
	return nil
}

// errCopyValue abandons a COPY whose rows hold a value that cannot be
// written; copyText keeps the reason, which stays in scoop.
var errCopyValue = errors.New("scoop: a value of the batch cannot be written as COPY text")

// copyText is the COPY text of rows, rendered as the COPY reads it: it
// holds one chunk of the stream (pgconn reads 64 KiB at a time; a wider row
// is held whole) instead of the whole batch, which with wide values was
// twice the batch's bytes on top of the batch itself.
type copyText struct {
	s     *Sink
	names []string
	rows  []*pipeline.Change
	next  int // the next row to render
	buf   bytes.Buffer
	// err is a value that cannot be written (set by Read, which runs in
	// pgconn's goroutine; read after CopyFrom returned).
	err atomic.Pointer[error]
}

func (t *copyText) Read(p []byte) (int, error) {
	for t.buf.Len() < len(p) && t.next < len(t.rows) {
		c := t.rows[t.next]
		for i, n := range t.names {
			if i > 0 {
				t.buf.WriteByte('\t')
			}
			if err := writeCopyValue(&t.buf, t.s.cols[n], c.After[n]); err != nil {
				err = pipeline.Permanent(fmt.Errorf("offset %d/%d: column %q: %w", c.Partition, c.Offset, n, err))
				t.err.Store(&err)
				return 0, errCopyValue // what the server is told (and logs)
			}
		}
		t.buf.WriteByte('\n')
		t.next++
	}
	if t.buf.Len() == 0 {
		return 0, io.EOF
	}
	return t.buf.Read(p)
}

// writeCopyText escapes a value for COPY's text format (the runs between
// escapes are copied whole), from a string or straight from an event's bytes.
func writeCopyText[T ~string | ~[]byte](buf *bytes.Buffer, v T) {
	start := 0
	for i := 0; i < len(v); i++ {
		var esc string
		switch v[i] {
		case '\\':
			esc = `\\`
		case '\t':
			esc = `\t`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		default:
			continue
		}
		buf.Grow(i - start) // the append below then never allocates
		buf.Write(append(buf.AvailableBuffer(), v[start:i]...))
		buf.WriteString(esc)
		start = i + 1
	}
	buf.Grow(len(v) - start)
	buf.Write(append(buf.AvailableBuffer(), v[start:]...))
}
