package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// Connect opens a session with scoop's session settings (DateStyle ISO,
// TimeZone UTC, extra_float_digits 3, ...), so values read as text are in
// the form the source publishes.
func Connect(ctx context.Context, url string) (*pgx.Conn, error) { return connect(ctx, url) }

// DescribeTable reads a monolith table's columns and key (as the source
// captures it).
func DescribeTable(ctx context.Context, conn *pgx.Conn, name TableName) (*schema.Table, error) {
	return describeTable(ctx, conn, name)
}

// LoadTypes reads pg_type, to resolve column types.
func LoadTypes(ctx context.Context, conn *pgx.Conn) (schema.TypeMap, error) {
	return loadTypes(ctx, conn)
}

// RepublishConfig says which table's rows to send again, to which topic,
// with which envelope (the settings of the running source).
type RepublishConfig struct {
	URL      string
	Table    TableName
	Topic    string
	Encoding schema.EncoderConfig
}

// Republish sends rows of the monolith table through the pipeline again:
// for each key (source column name -> value as text) the row as it is now,
// as an incremental-snapshot read ('r'), or a delete and its tombstone when
// the table has no such row. publish must return only once Kafka holds the
// records (the Producer's acks=all).
//
// Ordering against concurrent writes: the table is locked in SHARE mode
// (writers wait, readers do not) from before the rows are read until publish
// returned. A write that committed before the lock is in the rows read, and
// its own event, published by the source before or after these, carries the
// same or an older version; a write after the lock commits after these
// records are in Kafka, so the source publishes it after them, in the same
// partition (same key). The events carry the lock's clock as commit time,
// later than every commit before the lock and earlier than every commit
// after it, so Cassandra's write timestamps order them the same way. The
// lock is held for one batch (at most a few thousand keys): writers of the
// table pause for that long.
func Republish(ctx context.Context, cfg RepublishConfig, keys []map[string]string, publish func(context.Context, []pipeline.Record) error) (upserts, deletes int, err error) {
	conn, err := connect(ctx, cfg.URL)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(context.Background())
	t, err := describeTable(ctx, conn, cfg.Table)
	if err != nil {
		return 0, 0, err
	}
	types, err := loadTypes(ctx, conn)
	if err != nil {
		return 0, 0, err
	}
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&cfg.Encoding.Database); err != nil {
		return 0, 0, fmt.Errorf("read database name: %w", err)
	}
	enc := schema.NewEncoder(cfg.Encoding, types)
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = schema.QuoteIdent(c.Name)
	}
	var where []string
	var keyIdx []int
	var keyOIDs []uint32
	for i, c := range t.Columns {
		if c.Key {
			keyIdx = append(keyIdx, i)
			keyOIDs = append(keyOIDs, c.Type)
			where = append(where, fmt.Sprintf("%s = $%d", schema.QuoteIdent(c.Name), len(keyIdx)))
		}
	}
	query := "SELECT " + strings.Join(cols, ", ") + " FROM " + schema.QuoteQualified(t.Schema, t.Name) + " WHERE " + strings.Join(where, " AND ")
	const batch = 1000
	for start := 0; start < len(keys); start += batch {
		part := keys[start:min(start+batch, len(keys))]
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "LOCK TABLE "+schema.QuoteQualified(t.Schema, t.Name)+" IN SHARE MODE"); err != nil {
				return fmt.Errorf("lock %s: %w", cfg.Table, err)
			}
			var now time.Time
			var lsn string
			if err := tx.QueryRow(ctx, `SELECT clock_timestamp(), pg_current_wal_lsn()::text`).Scan(&now, &lsn); err != nil {
				return fmt.Errorf("read clock: %w", err)
			}
			var at uint64
			var hi, lo uint32
			if _, err := fmt.Sscanf(lsn, "%X/%X", &hi, &lo); err == nil {
				at = uint64(hi)<<32 | uint64(lo)
			}
			var recs []pipeline.Record
			for _, k := range part {
				args := make([][]byte, len(keyIdx))
				keyRow := make(schema.Row, len(t.Columns))
				for j, i := range keyIdx {
					v, ok := k[t.Columns[i].Name]
					if !ok {
						return fmt.Errorf("republish %s: key column %q missing", cfg.Table, t.Columns[i].Name)
					}
					args[j] = []byte(v)
					keyRow[i] = schema.Value{Kind: schema.Text, Data: []byte(v)}
				}
				// Parameters and results in text form, typed by the key
				// columns' own types (as the incremental snapshot reads).
				rr := tx.Conn().PgConn().ExecParams(ctx, query, args, keyOIDs, nil, nil)
				var row schema.Row
				for rr.NextRow() {
					row = textRow(rr.Values())
				}
				if _, err := rr.Close(); err != nil {
					return fmt.Errorf("read %s: %w", cfg.Table, err)
				}
				// The lock's WAL position as commit LSN: later than every commit
				// before the lock, so a sink that skips what a done truncate
				// wiped (positions before it) never skips a repair.
				src := schema.Source{LSN: at, CommitLSN: at, CommitTime: now, Snapshot: schema.SnapshotIncremental}
				ev := schema.Event{Op: schema.OpRead, Table: t, After: row, Source: src}
				if row == nil {
					ev = schema.Event{Op: schema.OpDelete, Table: t, Before: keyRow, Source: src}
				}
				rec, err := eventRecord(enc, cfg.Topic, &ev)
				if err != nil {
					return fmt.Errorf("republish %s: %w", cfg.Table, err)
				}
				recs = append(recs, *rec)
				if row == nil {
					recs = append(recs, pipeline.Record{Topic: cfg.Topic, Key: rec.Key, Time: rec.Time})
					deletes++
				} else {
					upserts++
				}
			}
			return publish(ctx, recs)
		})
		if err != nil {
			return upserts, deletes, err
		}
	}
	return upserts, deletes, nil
}
