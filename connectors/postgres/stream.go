package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// txState is what the decoder knows of the transaction being received.
type txState struct {
	open   bool
	skip   bool   // applied under scoop's own replication origin
	origin string // the scoop flow that wrote it (OriginPrefix message), "" for an application's
	// prev: PrevHeader of the transaction's next change of a row, from
	// a PrevPrefix message, by table and canonical key.
	prev       map[string]string
	xid        uint32
	commitLSN  uint64
	commitTime time.Time
	lastCommit uint64            // commit LSN of the transaction received before (0: none since the start)
	order      uint64            // changes emitted so far
	tableOrder map[uint32]uint64 // per relation
}

// position gives the next change of relation rel its place in the
// transaction (see schema.Source.Order).
func (tx *txState) position(rel uint32, src *schema.Source) {
	tx.order++
	if tx.tableOrder == nil {
		tx.tableOrder = map[uint32]uint64{}
	}
	tx.tableOrder[rel]++
	src.Order, src.TableOrder = tx.order, tx.tableOrder[rel]
}

// stream runs START_REPLICATION without pgoutput streaming: each
// transaction arrives after it committed (PostgreSQL spills large ones to
// its own disk) and its changes are emitted as they arrive, so memory stays
// bounded by the channel whatever the transaction's size.
func (s *Source) stream(ctx context.Context, repl *pgconn.PgConn, start pglogrepl.LSN, out chan<- pipeline.Item) error {
	err := pglogrepl.StartReplication(ctx, repl, s.cfg.Slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + schema.QuoteLiteral(schema.QuoteIdent(s.cfg.Publication)),
			"messages 'true'",
		},
	})
	if err != nil {
		return fmt.Errorf("start replication on slot %s: %w", s.cfg.Slot, err)
	}
	s.log.Info("streaming", "from", start.String())
	relations := map[uint32]*schema.Table{}
	enc := schema.NewEncoder(s.cfg.Encoding, s.types)
	s.catalog = &catalog{url: s.cfg.URL}
	defer s.catalog.close()
	s.keyOrder = pipeline.NewKeyCounter()
	var tx txState
	send := func(it pipeline.Item) error { return s.handOver(ctx, out, it) }
	nextStatus := time.Now()
	var lastSent uint64
	var deadline deadlineCtx
	defer deadline.release()
	for {
		if now := time.Now(); !now.Before(nextStatus) {
			if err := s.sendStatus(ctx, repl, false); err != nil {
				return err
			}
			lastSent = s.acked.Load()
			nextStatus = now.Add(s.cfg.StatusInterval)
		}
		raw, err := repl.ReceiveMessage(deadline.until(ctx, nextStatus))
		if err != nil {
			if ctx.Err() != nil {
				s.sendStatus(context.Background(), repl, false)
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receive from slot %s: %w", s.cfg.Slot, err)
		}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication error: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				// Outside a transaction everything up to the server's
				// position has been received: it may be confirmed once the
				// forwarder has published what came before it.
				if !tx.open && uint64(ka.ServerWALEnd) > s.acked.Load() {
					if err := send(pipeline.Item{Mark: uint64(ka.ServerWALEnd)}); err != nil {
						return err
					}
				}
				if ka.ReplyRequested {
					nextStatus = time.Time{}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse XLogData: %w", err)
				}
				s.stats.ReceivedLSN.Store(uint64(xld.WALStart))
				if err := s.handle(ctx, xld, relations, enc, &tx, send); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("unexpected message %T on replication connection", raw)
		}
		// Report promptly when a new position was acknowledged.
		if s.acked.Load() != lastSent && time.Until(nextStatus) > time.Second {
			nextStatus = time.Now().Add(time.Second)
		}
	}
}

// sendStatus reports the acknowledged position as written, flushed and
// applied. Flush is always set explicitly: pglogrepl would otherwise copy the
// write position, confirming data Kafka never got.
func (s *Source) sendStatus(ctx context.Context, repl *pgconn.PgConn, reply bool) error {
	pos := pglogrepl.LSN(s.acked.Load())
	if pos == 0 {
		return nil
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pos, WALFlushPosition: pos, WALApplyPosition: pos, ReplyRequested: reply,
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	return nil
}

func (s *Source) handle(ctx context.Context, xld pglogrepl.XLogData, relations map[uint32]*schema.Table, enc *schema.Encoder, tx *txState, send func(pipeline.Item) error) error {
	m, err := pglogrepl.Parse(xld.WALData)
	if err != nil {
		return fmt.Errorf("decode pgoutput message at %s: %w", xld.WALStart, err)
	}
	switch m := m.(type) {
	case *pglogrepl.RelationMessage:
		t := &schema.Table{OID: m.RelationID, Schema: m.Namespace, Name: m.RelationName}
		keys, err := s.catalog.keyColumns(ctx, m.RelationID)
		if err != nil {
			return err
		}
		for _, c := range m.Columns {
			if _, ok := s.types[c.DataType]; !ok {
				if err := s.reloadTypes(ctx); err != nil {
					return err
				}
				enc.SetTypes(s.types)
			}
			key := c.Flags&1 != 0
			if keys != nil {
				key = keys[c.Name]
			}
			t.Columns = append(t.Columns, schema.Column{Name: c.Name, Type: c.DataType, TypeMod: c.TypeModifier, Key: key})
		}
		relations[m.RelationID] = t
	case *pglogrepl.TypeMessage:
		if _, ok := s.types[m.DataType]; !ok {
			if err := s.reloadTypes(ctx); err != nil {
				return err
			}
			enc.SetTypes(s.types)
		}
	case *pglogrepl.BeginMessage:
		clear(tx.tableOrder)
		*tx = txState{open: true, xid: m.Xid, commitLSN: uint64(m.FinalLSN), commitTime: m.CommitTime, tableOrder: tx.tableOrder, lastCommit: tx.lastCommit}
		s.keyOrder.Reset()
	case *pglogrepl.OriginMessage:
		if isOwnOrigin(m.Name, s.cfg.Origin) {
			tx.skip = true
		}
	case *pglogrepl.CommitMessage:
		tx.open = false
		tx.lastCommit = uint64(m.CommitLSN)
		s.stats.LastCommit.Store(m.CommitTime.UnixMilli())
		s.stats.LastReceived.Store(time.Now().UnixMilli())
		return send(pipeline.Item{Mark: uint64(m.TransactionEndLSN)})
	case *pglogrepl.LogicalDecodingMessage:
		if m.Prefix == watermarkPrefix && m.Transactional {
			if c, high := s.marks.watermark(string(m.Content), s.cfg.Slot); high {
				return s.emitChunk(enc, c, uint64(m.LSN), tx, send)
			}
			return nil
		}
		if m.Prefix == OriginPrefix && m.Transactional {
			tx.origin = string(m.Content)
			return nil
		}
		if m.Prefix == PrevPrefix && m.Transactional {
			notePrev(tx, m.Content)
			return nil
		}
		if m.Prefix == heartbeatPrefix {
			if at, ok := heartbeatTime(m.Content); ok {
				s.stats.LastHeartbeat.Store(at.UnixMilli())
				s.stats.LastReceived.Store(time.Now().UnixMilli())
			}
		}
		if !m.Transactional && !tx.open {
			return send(pipeline.Item{Mark: uint64(m.LSN)})
		}
	case *pglogrepl.InsertMessage:
		return s.emit(ctx, relations, enc, tx, xld.WALStart, m.RelationID, schema.OpCreate, oldRow{}, m.Tuple, send)
	case *pglogrepl.UpdateMessage:
		return s.emit(ctx, relations, enc, tx, xld.WALStart, m.RelationID, schema.OpUpdate, oldTuple(m.OldTupleType, m.OldTuple), m.NewTuple, send)
	case *pglogrepl.DeleteMessage:
		return s.emit(ctx, relations, enc, tx, xld.WALStart, m.RelationID, schema.OpDelete, oldTuple(m.OldTupleType, m.OldTuple), nil, send)
	case *pglogrepl.TruncateMessage:
		if tx.skip {
			return nil
		}
		for _, id := range m.RelationIDs {
			t, ok := relations[id]
			if !ok {
				return fmt.Errorf("truncate of unknown relation %d at %s", id, xld.WALStart)
			}
			if !s.tables[TableName{t.Schema, t.Name}] {
				continue
			}
			ev := schema.Event{Op: schema.OpTruncate, Table: t, Source: schema.Source{LSN: uint64(xld.WALStart), CommitLSN: tx.commitLSN, LastCommitLSN: tx.lastCommit, TxID: tx.xid, CommitTime: tx.commitTime}}
			tx.position(id, &ev.Source)
			// A chunk of an incremental snapshot read before the truncate
			// must not be emitted after it.
			s.marks.noteTruncate(t)
			val, err := enc.Value(nil, &ev, time.Now())
			if err != nil {
				return err
			}
			// A truncate has no key: it goes to every partition, so that it
			// is ordered against every change before and after it.
			rec := &pipeline.Record{Topic: s.cfg.Topic(t.Schema, t.Name), Value: val, Time: tx.commitTime, AllPartitions: true}
			if err := send(pipeline.Item{Record: rec}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Source) reloadTypes(ctx context.Context) error {
	conn, err := connect(ctx, s.cfg.URL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	types, err := loadTypes(ctx, conn)
	if err != nil {
		return err
	}
	s.types = types
	return nil
}

// oldRow is the old tuple of an update or delete: with keyOnly ('K', the
// replica identity under DEFAULT or USING INDEX) pgoutput sends the other
// columns as nulls, which are not values.
type oldRow struct {
	tuple   *pglogrepl.TupleData
	keyOnly bool
}

func oldTuple(kind uint8, td *pglogrepl.TupleData) oldRow {
	return oldRow{tuple: td, keyOnly: kind == pglogrepl.UpdateMessageTupleTypeKey}
}

// beforeRow turns an old tuple into a row; columns a key-only tuple does
// not carry are Absent.
func beforeRow(t *schema.Table, old oldRow) schema.Row {
	row := tupleRow(t, old.tuple)
	if old.keyOnly {
		for i, v := range row {
			if v.Kind == schema.Null && !t.Columns[i].Key {
				row[i] = schema.Value{Kind: schema.Absent}
			}
		}
	}
	return row
}

func tupleRow(t *schema.Table, td *pglogrepl.TupleData) schema.Row {
	if td == nil {
		return nil
	}
	row := make(schema.Row, len(t.Columns))
	for i, c := range td.Columns {
		if i >= len(row) {
			break
		}
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull:
			row[i] = schema.Value{Kind: schema.Null}
		case pglogrepl.TupleDataTypeToast:
			row[i] = schema.Value{Kind: schema.Unchanged}
		default:
			row[i] = schema.Value{Kind: schema.Text, Data: c.Data}
		}
	}
	return row
}

func (s *Source) emit(ctx context.Context, relations map[uint32]*schema.Table, enc *schema.Encoder, tx *txState, lsn pglogrepl.LSN, rel uint32, op schema.Op, before oldRow, after *pglogrepl.TupleData, send func(pipeline.Item) error) error {
	if tx.skip {
		return nil
	}
	t, ok := relations[rel]
	if !ok {
		return fmt.Errorf("change of unknown relation %d at %s", rel, lsn)
	}
	if !s.tables[TableName{t.Schema, t.Name}] {
		return nil
	}
	ev := schema.Event{Op: op, Table: t, Before: beforeRow(t, before), After: tupleRow(t, after),
		Source: schema.Source{LSN: uint64(lsn), CommitLSN: tx.commitLSN, LastCommitLSN: tx.lastCommit, TxID: tx.xid, CommitTime: tx.commitTime, Snapshot: schema.SnapshotFalse}}
	if op == schema.OpDelete && ev.Before == nil {
		return fmt.Errorf("delete on %s at %s carries no old key", t.QualifiedName(), lsn)
	}
	if op == schema.OpUpdate && ev.Before != nil {
		// REPLICA IDENTITY FULL: the old row holds the values of the
		// TOASTed columns the update left out.
		for i, v := range ev.After {
			if v.Kind == schema.Unchanged && i < len(ev.Before) && (ev.Before[i].Kind == schema.Text || ev.Before[i].Kind == schema.Null) {
				ev.After[i] = ev.Before[i]
			}
		}
		moved, err := s.keyChange(ctx, enc, tx, t, &ev, send)
		if err != nil {
			return err
		}
		if moved {
			ev = schema.Event{Op: schema.OpCreate, Table: t, After: ev.After, Source: ev.Source}
		}
	}
	return s.publish(enc, tx, rel, &ev, send)
}

// keyChange turns an update that changed the row's key into a delete of the
// old key (with its tombstone), as Debezium does; the caller then emits the
// new row as a create. Under REPLICA IDENTITY DEFAULT the old tuple carries
// only the identity columns, and only when they changed.
func (s *Source) keyChange(ctx context.Context, enc *schema.Encoder, tx *txState, t *schema.Table, ev *schema.Event, send func(pipeline.Item) error) (bool, error) {
	for i, c := range t.Columns {
		if c.Key && (i >= len(ev.Before) || (ev.Before[i].Kind != schema.Text && ev.Before[i].Kind != schema.Null)) {
			return false, nil // the old tuple does not hold the whole key
		}
	}
	del := schema.Event{Op: schema.OpDelete, Table: t, Before: ev.Before, Source: ev.Source}
	oldKey, err := enc.Key(nil, &del)
	if err != nil {
		return false, fmt.Errorf("encode old key of %s: %w", t.QualifiedName(), err)
	}
	newKey, err := enc.Key(nil, ev)
	if err != nil {
		return false, fmt.Errorf("encode key of %s: %w", t.QualifiedName(), err)
	}
	if string(oldKey) == string(newKey) {
		return false, nil
	}
	// The create must carry every column: read the TOASTed ones the WAL
	// left out from the table.
	if err := s.catalog.fillUnchanged(ctx, t, ev.After, tx.xid); err != nil {
		return false, err
	}
	return true, s.publish(enc, tx, t.OID, &del, send)
}

// publish encodes a change with its place in the transaction and hands it
// over (a delete is followed by its tombstone).
func (s *Source) publish(enc *schema.Encoder, tx *txState, rel uint32, ev *schema.Event, send func(pipeline.Item) error) error {
	t := ev.Table
	topic := s.cfg.Topic(t.Schema, t.Name)
	key, err := enc.Key(make([]byte, 0, enc.KeyCap(t)), ev)
	if err != nil {
		return fmt.Errorf("encode change of %s at %s: %w", t.QualifiedName(), pglogrepl.LSN(ev.Source.LSN), err)
	}
	tx.position(rel, &ev.Source)
	ev.Source.KeyOrder = s.keyOrder.Next(topic, key)
	val, err := enc.Value(make([]byte, 0, enc.EventValueCap(ev)), ev, time.Now())
	if err != nil {
		return fmt.Errorf("encode change of %s at %s: %w", t.QualifiedName(), pglogrepl.LSN(ev.Source.LSN), err)
	}
	rec := &pipeline.Record{Topic: topic, Key: key, Value: val, Time: ev.Source.CommitTime}
	if tx.origin != "" {
		rec.Headers = map[string]string{pipeline.OriginHeader: tx.origin}
	}
	if len(tx.prev) > 0 {
		id := t.QualifiedName() + " " + canonicalKey(key)
		if p, ok := tx.prev[id]; ok {
			delete(tx.prev, id)
			if rec.Headers == nil {
				rec.Headers = map[string]string{}
			}
			rec.Headers[pipeline.PrevHeader] = p
		}
	}
	s.stats.Events.Add(1)
	s.marks.noteChange(t, rec.Key)
	if err := send(pipeline.Item{Record: rec}); err != nil {
		return err
	}
	if ev.Op == schema.OpDelete {
		return send(pipeline.Item{Record: &pipeline.Record{Topic: topic, Key: rec.Key, Time: rec.Time, Headers: rec.Headers}})
	}
	return nil
}

// isOwnOrigin: scoop's sinks write under the origin "scoop" or one of its
// pool "scoop_1" ... (see Sink).
func isOwnOrigin(name, origin string) bool {
	if name == origin {
		return true
	}
	rest, ok := strings.CutPrefix(name, origin+"_")
	if !ok || rest == "" {
		return false
	}
	for _, r := range rest {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// deadlineCtx reuses one deadline context per status period instead of
// creating one (and its timer) for every message received.
type deadlineCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
	at     time.Time
}

func (d *deadlineCtx) until(parent context.Context, at time.Time) context.Context {
	if d.ctx == nil || !d.at.Equal(at) {
		d.release()
		d.ctx, d.cancel = context.WithDeadline(parent, at)
		d.at = at
	}
	return d.ctx
}

func (d *deadlineCtx) release() {
	if d.cancel != nil {
		d.cancel()
	}
}
