package schema

import (
	"fmt"
	"strconv"
	"time"
)

// Op is the kind of change, as in Debezium's envelope.
type Op byte

const (
	OpCreate Op = 'c'
	OpUpdate Op = 'u'
	OpDelete Op = 'd'
	OpRead   Op = 'r' // a row read by a snapshot
	// OpTruncate: the whole table was emptied (before and after are null,
	// and the record has no key).
	OpTruncate Op = 't'
)

// Snapshot values of source.snapshot, Debezium's: a snapshot's first row is
// "first", its last "last", the first and last rows of its other tables
// "first_in_data_collection" and "last_in_data_collection", the rest "true";
// streamed changes are "false".
const (
	SnapshotFalse        = "false"
	SnapshotTrue         = "true"
	SnapshotFirst        = "first"
	SnapshotLast         = "last"
	SnapshotFirstInTable = "first_in_data_collection"
	SnapshotLastInTable  = "last_in_data_collection"
	// SnapshotIncremental marks rows of an incremental snapshot taken while
	// streaming (Debezium uses the same word).
	SnapshotIncremental = "incremental"
)

// Connector is source.connector. scoop's source block has the members and
// meaning of Debezium's PostgreSQL connector, so it names that connector:
// consumers that choose how to read source (lsn, txId, sequence) by it read
// scoop's right. scoop's own version is in source.version.
const Connector = "postgresql"

// Source is the provenance block of an event.
type Source struct {
	LSN       uint64 // LSN of the change (or the snapshot's consistent point)
	CommitLSN uint64 // commit LSN of the transaction; with LSN it orders changes
	// LastCommitLSN is the commit LSN of the transaction the stream received
	// before this change's (Debezium's lastCommitLsn, the first element of
	// source.sequence); 0 when unknown: snapshot rows, and the first
	// transaction after the stream started.
	LastCommitLSN uint64
	TxID          uint32    // transaction id; 0 for snapshot rows
	CommitTime    time.Time // commit time of the transaction; snapshot start for snapshot rows
	Snapshot      string    // one of the Snapshot values
	// Order is the change's place in its transaction (1, 2, ...): with
	// CommitLSN it is the change's position, unique and strictly increasing
	// in source order (several rows of one COPY share an LSN). 0 for
	// snapshot rows, which carry no transaction block.
	Order uint64
	// TableOrder is the change's place among its transaction's changes of
	// the same table (Debezium's data_collection_order).
	TableOrder uint64
	// KeyOrder is the change's place among its transaction's changes of the
	// same key (1 for the first); an upper bound in transactions that touch
	// very many keys (see KeyCounter).
	KeyOrder uint64
}

// Event is one change of one row.
type Event struct {
	Op     Op
	Table  *Table
	Before Row // nil for inserts and snapshot reads
	After  Row // nil for deletes
	Source Source
}

// EncoderConfig configures the envelope.
type EncoderConfig struct {
	Name     string // logical server name, source.name (the topic prefix)
	Database string // source.db
	Version  string // source.version
	Schemas  bool   // wrap key and value in Kafka Connect's {"schema","payload"}
}

// Encoder writes events as Debezium-compatible JSON. It is not safe for
// concurrent use (it caches per-table schemas).
type Encoder struct {
	cfg   EncoderConfig
	types Types
	// tables holds, per relation, what its current version's events write
	// the same: a new version (a new *Table) replaces the entry, so the
	// cache stays one entry per table however often PostgreSQL sends the
	// relation again (every VACUUM or ANALYZE of it does).
	tables map[uint32]*encodedTable
	// The source block's members that are the same in every event:
	// version, connector and name up to ts_ms's value; db.
	sourceHead, sourceDB []byte
}

type tableSchemas struct{ key, value []byte }

// encodedTable is what every event of a table version writes the same:
// per column its member name, quoted, with the colon, and its type with
// domains resolved; the source block's schema and table members; the Kafka
// Connect schemas (made on first use).
type encodedTable struct {
	t       *Table // the version it was made for
	cols    []encodedColumn
	source  []byte
	schemas *tableSchemas
}

type encodedColumn struct {
	member []byte
	typ    TypeInfo
}

// NewEncoder returns an Encoder that resolves column types with types.
func NewEncoder(cfg EncoderConfig, types Types) *Encoder {
	e := &Encoder{cfg: cfg, types: types, tables: map[uint32]*encodedTable{}}
	e.sourceHead = append(e.sourceHead, `{"version":`...)
	e.sourceHead = appendString(e.sourceHead, []byte(cfg.Version))
	e.sourceHead = append(e.sourceHead, `,"connector":"`+Connector+`","name":`...)
	e.sourceHead = appendString(e.sourceHead, []byte(cfg.Name))
	e.sourceHead = append(e.sourceHead, `,"`+memberTsMs+`":`...)
	e.sourceDB = appendString(append(e.sourceDB, `,"db":`...), []byte(cfg.Database))
	return e
}

// SetTypes replaces the type registry (after new types appeared).
func (e *Encoder) SetTypes(types Types) {
	e.types = types
	clear(e.tables)
}

// table returns what t's events write the same, made on t's first event (a
// table version is one *Table).
func (e *Encoder) table(t *Table) *encodedTable {
	if et := e.tables[t.OID]; et != nil && et.t == t {
		return et
	}
	et := &encodedTable{t: t, cols: make([]encodedColumn, len(t.Columns))}
	for i, c := range t.Columns {
		et.cols[i] = encodedColumn{member: append(appendString(nil, []byte(c.Name)), ':'), typ: resolve(e.types, c.Type)}
	}
	et.source = appendString(append(et.source, `,"schema":`...), []byte(t.Schema))
	et.source = appendString(append(et.source, `,"table":`...), []byte(t.Name))
	e.tables[t.OID] = et
	return et
}

// Key returns the event's Kafka key: the primary key as a JSON object.
func (e *Encoder) Key(dst []byte, ev *Event) ([]byte, error) {
	row := ev.After
	if ev.Op == OpDelete || row == nil {
		row = ev.Before
	}
	if e.cfg.Schemas {
		dst = append(dst, `{"`+memberSchema+`":`...)
		dst = append(dst, e.tableSchemas(ev.Table).key...)
		dst = append(dst, `,"`+memberPayload+`":`...)
	}
	dst = append(dst, '{')
	n := 0
	cols := e.table(ev.Table).cols
	for i, c := range ev.Table.Columns {
		if !c.Key {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, cols[i].member...)
		var err error
		if dst, err = e.appendValue(dst, cols[i].typ, valueAt(row, i)); err != nil {
			return dst, fmt.Errorf("key column %q: %w", c.Name, err)
		}
	}
	if n == 0 {
		return dst, fmt.Errorf("table %s has no key column", ev.Table.QualifiedName())
	}
	dst = append(dst, '}')
	if e.cfg.Schemas {
		dst = append(dst, '}')
	}
	return dst, nil
}

// Value returns the event's Kafka value: the Debezium envelope.
func (e *Encoder) Value(dst []byte, ev *Event, now time.Time) ([]byte, error) {
	if e.cfg.Schemas {
		dst = append(dst, `{"`+memberSchema+`":`...)
		dst = append(dst, e.tableSchemas(ev.Table).value...)
		dst = append(dst, `,"`+memberPayload+`":`...)
	}
	var err error
	dst = append(dst, `{"`+memberBefore+`":`...)
	if dst, err = e.appendRow(dst, ev.Table, ev.Before); err != nil {
		return dst, fmt.Errorf("before: %w", err)
	}
	dst = append(dst, `,"`+memberAfter+`":`...)
	if dst, err = e.appendRow(dst, ev.Table, ev.After); err != nil {
		return dst, fmt.Errorf("after: %w", err)
	}
	dst = append(dst, `,"`+memberSource+`":`...)
	dst = e.appendSource(dst, ev)
	dst = append(dst, `,"`+memberOp+`":"`...)
	dst = append(dst, byte(ev.Op))
	dst = append(dst, `","ts_ms":`...)
	var nowBuf [20]byte
	nowMs, nowUs, nowNs := epochDigits(&nowBuf, now)
	dst = append(dst, nowMs...)
	dst = append(dst, `,"ts_us":`...)
	dst = append(dst, nowUs...)
	dst = append(dst, `,"ts_ns":`...)
	dst = append(dst, nowNs...)
	dst = append(dst, `,"`+memberTransaction+`":`...)
	dst = appendTransaction(dst, &ev.Source)
	if unchanged := unchangedColumns(ev.Table, ev.After); len(unchanged) > 0 {
		dst = append(dst, `,"`+memberUnchanged+`":[`...)
		for i, name := range unchanged {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, []byte(name))
		}
		dst = append(dst, ']')
	} else if e.cfg.Schemas {
		// With schemas every member of the schema is written, as Kafka
		// Connect's JsonConverter writes them: what it reads back and
		// writes again is the same record.
		dst = append(dst, `,"`+memberUnchanged+`":null`...)
	}
	dst = append(dst, '}')
	if e.cfg.Schemas {
		dst = append(dst, '}')
	}
	return dst, nil
}

// appendSource writes the source block with the members of Debezium's
// PostgreSQL connector, in its order, then scoop's commit_lsn.
func (e *Encoder) appendSource(dst []byte, ev *Event) []byte {
	src := &ev.Source
	dst = append(dst, e.sourceHead...)
	var commitBuf [20]byte
	commitMs, commitUs, commitNs := epochDigits(&commitBuf, src.CommitTime)
	dst = append(dst, commitMs...)
	dst = append(dst, `,"snapshot":`...)
	snap := src.Snapshot
	if snap == "" {
		snap = SnapshotFalse
	}
	dst = appendString(dst, []byte(snap))
	dst = append(dst, e.sourceDB...)
	dst = append(dst, `,"sequence":`...)
	dst = appendSequence(dst, src.LastCommitLSN, src.LSN)
	dst = append(dst, `,"`+memberTsUs+`":`...)
	dst = append(dst, commitUs...)
	dst = append(dst, `,"ts_ns":`...)
	dst = append(dst, commitNs...)
	dst = append(dst, e.table(ev.Table).source...)
	dst = append(dst, `,"txId":`...)
	if src.TxID == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendUint(dst, uint64(src.TxID), 10)
	}
	dst = append(dst, `,"`+memberLSN+`":`...)
	dst = strconv.AppendUint(dst, src.LSN, 10)
	dst = append(dst, `,"xmin":null,"`+memberCommitLSN+`":`...)
	dst = strconv.AppendUint(dst, src.CommitLSN, 10)
	return append(dst, '}')
}

// epochDigits returns t since the epoch in milliseconds, microseconds and
// nanoseconds, as decimal digits: formatted once, the nanoseconds' digits
// without their last 6 or 3 are the others, for times from 1970-01-01 plus
// 1 ms until 2255 (UnixNano overflows outside 1678..2262, and wraps into
// that range for some times far outside it: the seconds are checked too);
// other times are formatted each on its own.
func epochDigits(buf *[20]byte, t time.Time) (ms, us, ns []byte) {
	const lo, hi = 1_000_000, 9_000_000_000_000_000_000 // 1970 + 1 ms .. 2255
	if sec := t.Unix(); sec >= 0 && sec < hi/1_000_000_000 {
		if n := t.UnixNano(); n >= lo {
			ns = strconv.AppendInt(buf[:0], n, 10)
			return ns[:len(ns)-6], ns[:len(ns)-3], ns
		}
	}
	return strconv.AppendInt(nil, t.UnixMilli(), 10), strconv.AppendInt(nil, t.UnixMicro(), 10), strconv.AppendInt(nil, t.UnixNano(), 10)
}

// appendSequence writes Debezium's source.sequence: a JSON string holding
// a JSON array of two strings, the last committed LSN (null when unknown)
// and the change's LSN, as decimal numbers ("[\"1\",\"2\"]"). Digits need no
// escaping, so it is written quoted directly (no buffer per event).
func appendSequence(dst []byte, lastCommit, lsn uint64) []byte {
	dst = append(dst, `"[`...)
	if lastCommit == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, `\"`...)
		dst = strconv.AppendUint(dst, lastCommit, 10)
		dst = append(dst, `\"`...)
	}
	dst = append(dst, `,\"`...)
	dst = strconv.AppendUint(dst, lsn, 10)
	return append(dst, `\"]"`...)
}

func unchangedColumns(t *Table, row Row) []string {
	var names []string
	for i, v := range row {
		if v.Kind == Unchanged && i < len(t.Columns) {
			names = append(names, t.Columns[i].Name)
		}
	}
	return names
}

func valueAt(row Row, i int) Value {
	if i < len(row) {
		return row[i]
	}
	return Value{Kind: Absent}
}

// appendRow writes a row as a JSON object. Absent columns are written as
// null (Debezium does the same for the key-only old tuple); unchanged TOAST
// columns are left out of the object and listed in "unchanged".
func (e *Encoder) appendRow(dst []byte, t *Table, row Row) ([]byte, error) {
	if row == nil {
		return append(dst, "null"...), nil
	}
	dst = append(dst, '{')
	n := 0
	cols := e.table(t).cols
	for i, c := range t.Columns {
		v := valueAt(row, i)
		if v.Kind == Unchanged {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, cols[i].member...)
		var err error
		if dst, err = e.appendValue(dst, cols[i].typ, v); err != nil {
			return dst, fmt.Errorf("column %q: %w", c.Name, err)
		}
	}
	return append(dst, '}'), nil
}

func (e *Encoder) appendValue(dst []byte, t TypeInfo, v Value) ([]byte, error) {
	switch v.Kind {
	case Text:
		return appendJSONOf(dst, e.types, t, v.Data)
	default:
		return append(dst, "null"...), nil
	}
}

// appendTransaction writes Debezium's transaction block (id, total_order,
// data_collection_order) plus scoop's key_order, or null for snapshot rows.
func appendTransaction(dst []byte, src *Source) []byte {
	if src.Order == 0 {
		return append(dst, "null"...)
	}
	dst = append(dst, `{"id":"`...)
	dst = strconv.AppendUint(dst, uint64(src.TxID), 10)
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, src.CommitLSN, 10)
	dst = append(dst, `","`+memberTotalOrder+`":`...)
	dst = strconv.AppendUint(dst, src.Order, 10)
	dst = append(dst, `,"data_collection_order":`...)
	dst = strconv.AppendUint(dst, src.TableOrder, 10)
	dst = append(dst, `,"`+memberKeyOrder+`":`...)
	dst = strconv.AppendUint(dst, src.KeyOrder, 10)
	return append(dst, '}')
}
