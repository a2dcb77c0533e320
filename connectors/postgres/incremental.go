package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// Incremental snapshots copy a table while the stream keeps flowing, with
// the watermark method of Netflix's DBLog: for each primary-key chunk,
//  1. a low watermark is written to the WAL (a transactional logical message),
//  2. the chunk is selected,
//  3. a high watermark is written.
// When the stream reaches the low watermark it starts noting which keys of
// the table change; at the high watermark it emits the chunk's rows minus
// those keys (the stream already carries newer versions of them), as op "r".
// So no change is lost and none is overwritten by an older copy.

const watermarkPrefix = "scoop-watermark"

type chunk struct {
	id      string
	table   *schema.Table
	rows    []schema.Row
	open    bool
	changed map[string]bool
	// truncated: the table was truncated between the watermarks.
	truncated bool
	done      chan struct{} // closed by the forwarder once the rows are published
}

type watermarks struct {
	mu     sync.Mutex
	chunks map[string]*chunk
	seq    atomic.Uint64
	active atomic.Int32 // len(chunks), read without the lock on the hot path
}

func (w *watermarks) add(c *chunk) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.chunks == nil {
		w.chunks = map[string]*chunk{}
	}
	w.chunks[c.id] = c
	w.active.Store(int32(len(w.chunks)))
}

func (w *watermarks) remove(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.chunks, id)
	w.active.Store(int32(len(w.chunks)))
}

// noteChange records a streamed change of a table with open chunks.
func (w *watermarks) noteChange(t *schema.Table, key []byte) {
	if w.active.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.chunks {
		if c.open && c.table.Schema == t.Schema && c.table.Name == t.Name {
			c.changed[string(key)] = true
		}
	}
}

// noteTruncate records a truncate of a table with open chunks: their rows
// were read before it, so none of them may be emitted.
func (w *watermarks) noteTruncate(t *schema.Table) {
	if w.active.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.chunks {
		if c.open && c.table.Schema == t.Schema && c.table.Name == t.Name {
			c.truncated = true
		}
	}
}

// watermark handles a watermark message seen by the stream; for a high
// watermark it returns the chunk to emit.
func (w *watermarks) watermark(content string, slot string) (*chunk, bool) {
	parts := strings.Split(content, "|")
	if len(parts) != 3 || parts[0] != slot {
		return nil, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.chunks[parts[1]]
	if !ok {
		return nil, false
	}
	switch parts[2] {
	case "low":
		c.open = true
		return nil, false
	case "high":
		if !c.open {
			return nil, false
		}
		delete(w.chunks, c.id)
		w.active.Store(int32(len(w.chunks)))
		return c, true
	}
	return nil, false
}

// emitChunk hands over a chunk's rows that the stream did not change between
// the watermarks, then a barrier that closes c.done once they are published.
// Called by the stream loop at the high watermark.
func (s *Source) emitChunk(enc *schema.Encoder, c *chunk, lsn uint64, tx *txState, send func(pipeline.Item) error) error {
	topic := s.cfg.Topic(c.table.Schema, c.table.Name)
	rows := c.rows
	if c.truncated {
		rows = nil
	}
	for _, row := range rows {
		// The rows take their position in the high watermark's transaction:
		// they are as new as it (a sink orders them after every change
		// before it, and after a truncate before it).
		ev := schema.Event{Op: schema.OpRead, Table: c.table, After: row,
			Source: schema.Source{LSN: lsn, CommitLSN: tx.commitLSN, LastCommitLSN: tx.lastCommit, TxID: tx.xid, CommitTime: tx.commitTime, Snapshot: schema.SnapshotIncremental}}
		key, err := enc.Key(nil, &ev)
		if err != nil {
			return fmt.Errorf("incremental snapshot of %s: %w", c.table.QualifiedName(), err)
		}
		if c.changed[string(key)] {
			continue
		}
		tx.position(c.table.OID, &ev.Source)
		rec, err := eventRecord(enc, topic, &ev)
		if err != nil {
			return fmt.Errorf("incremental snapshot of %s: %w", c.table.QualifiedName(), err)
		}
		s.stats.SnapshotRows.Add(1)
		if err := send(pipeline.Item{Record: rec}); err != nil {
			return err
		}
	}
	// The forwarder closes done once the rows above are in Kafka: only then
	// may the table be recorded as copied (a crash before that copies it
	// again on restart).
	return send(pipeline.Item{Barrier: c.done})
}

// incrementalSnapshot copies tables chunk by chunk while the stream runs,
// and records each as snapshotted once its last chunk is in Kafka.
func (s *Source) incrementalSnapshot(ctx context.Context, tables []*schema.Table) error {
	conn, err := connect(ctx, s.cfg.URL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	pc := conn.PgConn()
	for _, t := range tables {
		started := time.Now()
		rows, err := s.incrementalTable(ctx, pc, t)
		if err != nil {
			return err
		}
		if err := markSnapshotted(ctx, conn, s.cfg.Slot, []TableName{{t.Schema, t.Name}}); err != nil {
			return err
		}
		s.log.Info("incremental snapshot complete", "table", t.QualifiedName(), "rows", rows, "took", time.Since(started).Round(time.Millisecond))
	}
	return nil
}

func (s *Source) incrementalTable(ctx context.Context, pc *pgconn.PgConn, t *schema.Table) (int64, error) {
	var estimate int64
	if r := pc.ExecParams(ctx, estimateRowsSQL, [][]byte{[]byte(fmt.Sprint(t.OID))}, nil, nil, nil).Read(); r.Err == nil && len(r.Rows) > 0 {
		fmt.Sscan(string(r.Rows[0][0]), &estimate)
	}
	tn := TableName{Schema: t.Schema, Name: t.Name}
	s.stats.Snapshots.Start(tn, estimate, time.Now())
	q := newChunkQuery(t, s.cfg.SnapshotChunkRows)
	var last [][]byte
	var total int64
	lastLog := time.Now()
	for {
		id := fmt.Sprintf("%d-%d", time.Now().UnixNano(), s.marks.seq.Add(1))
		c := &chunk{id: id, table: t, changed: map[string]bool{}, done: make(chan struct{})}
		s.marks.add(c)
		if err := emitWatermark(ctx, pc, s.cfg.Slot, id, "low"); err != nil {
			s.marks.remove(id)
			return total, err
		}
		rows, next, err := q.read(ctx, pc, last)
		if err != nil {
			s.marks.remove(id)
			return total, fmt.Errorf("incremental snapshot of %s: %w", t.QualifiedName(), err)
		}
		s.marks.mu.Lock()
		c.rows = rows
		s.marks.mu.Unlock()
		if err := emitWatermark(ctx, pc, s.cfg.Slot, id, "high"); err != nil {
			s.marks.remove(id)
			return total, err
		}
		select {
		case <-c.done:
		case <-ctx.Done():
			return total, ctx.Err()
		}
		total += int64(len(rows))
		s.stats.Snapshots.Add(tn, int64(len(rows)))
		if time.Since(lastLog) > 5*time.Second {
			s.log.Info("incremental snapshot progress", "table", t.QualifiedName(), "rows", total)
			lastLog = time.Now()
		}
		if next == nil {
			s.stats.Snapshots.Finish(tn)
			return total, nil
		}
		last = next
	}
}

func emitWatermark(ctx context.Context, pc *pgconn.PgConn, slot, id, kind string) error {
	content := slot + "|" + id + "|" + kind
	_, err := pc.ExecParams(ctx, `SELECT pg_logical_emit_message(true, $1, $2)`, [][]byte{[]byte(watermarkPrefix), []byte(content)}, nil, nil, nil).Close()
	if err != nil {
		return fmt.Errorf("write %s watermark: %w", kind, err)
	}
	return nil
}

// chunkQuery reads a table in primary-key order, one chunk at a time.
type chunkQuery struct {
	first, next string
	keyIdx      []int
	keyOIDs     []uint32
	size        int
}

func newChunkQuery(t *schema.Table, size int) *chunkQuery {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = schema.QuoteIdent(c.Name)
	}
	q := &chunkQuery{keyIdx: t.KeyIndexes(), size: size}
	keyCols := make([]string, len(q.keyIdx))
	params := make([]string, len(q.keyIdx))
	for i, k := range q.keyIdx {
		keyCols[i] = schema.QuoteIdent(t.Columns[k].Name)
		q.keyOIDs = append(q.keyOIDs, t.Columns[k].Type)
		params[i] = fmt.Sprintf("$%d", i+1)
	}
	base := "SELECT " + strings.Join(cols, ", ") + " FROM " + schema.QuoteQualified(t.Schema, t.Name)
	order := " ORDER BY " + strings.Join(keyCols, ", ") + fmt.Sprintf(" LIMIT %d", size)
	q.first = base + order
	q.next = base + " WHERE (" + strings.Join(keyCols, ", ") + ") > (" + strings.Join(params, ", ") + ")" + order
	return q
}

// each streams the chunk after last (nil: the first) to fn, and returns the
// key to continue from (nil when the table is exhausted).
func (q *chunkQuery) each(ctx context.Context, pc *pgconn.PgConn, last [][]byte, fn func(schema.Row) error) ([][]byte, int, error) {
	var rr *pgconn.ResultReader
	if last == nil {
		rr = pc.ExecParams(ctx, q.first, nil, nil, nil, nil)
	} else {
		rr = pc.ExecParams(ctx, q.next, last, q.keyOIDs, nil, nil)
	}
	n := 0
	var lastRow schema.Row
	for rr.NextRow() {
		lastRow = textRow(rr.Values())
		if err := fn(lastRow); err != nil {
			rr.Close()
			return nil, n, err
		}
		n++
	}
	if _, err := rr.Close(); err != nil {
		return nil, n, err
	}
	if n < q.size {
		return nil, n, nil
	}
	next := make([][]byte, len(q.keyIdx))
	for i, k := range q.keyIdx {
		next[i] = lastRow[k].Data
	}
	return next, n, nil
}

// read returns the chunk after last and the key to continue from.
func (q *chunkQuery) read(ctx context.Context, pc *pgconn.PgConn, last [][]byte) ([]schema.Row, [][]byte, error) {
	var rows []schema.Row
	next, _, err := q.each(ctx, pc, last, func(r schema.Row) error {
		rows = append(rows, r)
		return nil
	})
	return rows, next, err
}

// textRow copies a row read in text format (pgconn reuses its buffers):
// its values into one buffer, not one each.
func textRow(vals [][]byte) schema.Row {
	size := 0
	for _, v := range vals {
		size += len(v)
	}
	buf := make([]byte, 0, size)
	row := make(schema.Row, len(vals))
	for i, v := range vals {
		if v == nil {
			row[i] = schema.Value{Kind: schema.Null}
		} else {
			at := len(buf)
			buf = append(buf, v...)
			row[i] = schema.Value{Kind: schema.Text, Data: buf[at:len(buf):len(buf)]}
		}
	}
	return row
}
