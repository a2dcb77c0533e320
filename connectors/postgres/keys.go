package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/schema"
)

// catalog answers the stream's questions about tables on a session of its
// own, opened on first use: which columns are a table's key, and a row's
// current values when the WAL did not carry them.
type catalog struct {
	url   string
	conn  *pgx.Conn
	types map[[2]int64]string // format_type(oid, typmod)
}

func (c *catalog) session(ctx context.Context) (*pgx.Conn, error) {
	if c.conn != nil && !c.conn.IsClosed() {
		return c.conn, nil
	}
	conn, err := connect(ctx, c.url)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return conn, nil
}

func (c *catalog) close() {
	if c.conn != nil {
		c.conn.Close(context.Background())
	}
}

// keyColumns returns the names of a table's key columns: its primary key,
// else its REPLICA IDENTITY USING INDEX columns; none when it has neither
// (REPLICA IDENTITY FULL without a primary key keys by the whole row).
// pgoutput cannot be trusted here: under REPLICA IDENTITY FULL it flags
// every column as part of the identity, and keys must stay the primary key
// so that per-key order holds.
func (c *catalog) keyColumns(ctx context.Context, oid uint32) (map[string]bool, error) {
	conn, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, `
		SELECT a.attname FROM pg_class c
		JOIN LATERAL (
			SELECT indkey::int2[] AS indkey FROM pg_index
			WHERE indrelid = c.oid AND (indisprimary OR (c.relreplident = 'i' AND indisreplident))
			ORDER BY indisprimary DESC LIMIT 1) i ON true
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
		WHERE c.oid = $1`, oid)
	if err != nil {
		return nil, fmt.Errorf("read the key of relation %d: %w", oid, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read the key of relation %d: %w", oid, err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	set := make(map[string]bool, len(keys))
	for _, k := range keys {
		set[k] = true
	}
	return set, nil
}

// fillUnchanged reads, for a row whose WAL record left TOASTed columns out
// (Unchanged), their current values from the table, looked up by the row's
// key. Used only when a key change turns an update into a delete and a
// create: the create must carry every column. The current value is at
// least as new as the change, and every later change of the row follows it
// in the stream, so the store converges. When the row is gone (deleted or
// re-keyed since), the columns become NULL: the later delete or key change
// settles the row.
//
// The walsender decodes a commit as soon as its WAL record is flushed, a
// moment before the transaction becomes visible to other sessions: the read
// first waits until transaction xid is visible, or it would find the row
// at its old key and take it for gone.
func (c *catalog) fillUnchanged(ctx context.Context, t *schema.Table, row schema.Row, xid uint32) error {
	var want []int
	for i, v := range row {
		if v.Kind == schema.Unchanged {
			want = append(want, i)
		}
	}
	if len(want) == 0 {
		return nil
	}
	conn, err := c.session(ctx)
	if err != nil {
		return err
	}
	if err := c.awaitVisible(ctx, conn, xid); err != nil {
		return err
	}
	cols := make([]string, len(want))
	for i, ci := range want {
		cols[i] = schema.QuoteIdent(t.Columns[ci].Name) + "::text"
	}
	var where []string
	var args []any
	for i, col := range t.Columns {
		if !col.Key {
			continue
		}
		typ, err := c.typeName(ctx, col)
		if err != nil {
			return err
		}
		args = append(args, string(row[i].Data))
		// The parameter is cast, not the column, so the key's index is used.
		where = append(where, fmt.Sprintf("%s = $%d::text::%s", schema.QuoteIdent(col.Name), len(args), typ))
	}
	vals := make([]*string, len(want))
	dst := make([]any, len(want))
	for i := range vals {
		dst[i] = &vals[i]
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + schema.QuoteQualified(t.Schema, t.Name) + " WHERE " + strings.Join(where, " AND ")
	err = conn.QueryRow(ctx, q, args...).Scan(dst...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		for _, ci := range want {
			row[ci] = schema.Value{Kind: schema.Null}
		}
		return nil
	case err != nil:
		return fmt.Errorf("read unchanged TOAST columns of %s: %w", t.QualifiedName(), err)
	}
	for i, ci := range want {
		if vals[i] == nil {
			row[ci] = schema.Value{Kind: schema.Null}
		} else {
			row[ci] = schema.Value{Kind: schema.Text, Data: []byte(*vals[i])}
		}
	}
	return nil
}

// typeName is the SQL name of a column's type (the relation message gives
// only its OID), as format_type prints it: quoted and qualified as needed.
func (c *catalog) typeName(ctx context.Context, col schema.Column) (string, error) {
	k := [2]int64{int64(col.Type), int64(col.TypeMod)}
	if name, ok := c.types[k]; ok {
		return name, nil
	}
	var name string
	if err := c.conn.QueryRow(ctx, `SELECT format_type($1::oid, $2)`, col.Type, col.TypeMod).Scan(&name); err != nil {
		return "", fmt.Errorf("name the type of column %q: %w", col.Name, err)
	}
	if c.types == nil {
		c.types = map[[2]int64]string{}
	}
	c.types[k] = name
	return name, nil
}

// awaitVisible waits until transaction xid (32 bits, as pgoutput gives it)
// is visible to new snapshots of this session.
func (c *catalog) awaitVisible(ctx context.Context, conn *pgx.Conn, xid uint32) error {
	deadline := time.Now().Add(30 * time.Second)
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 50*time.Millisecond) {
		var visible bool
		// The 64-bit id is xid in the epoch of the snapshot's xmax (or the
		// one before, if that would put it in the future).
		err := conn.QueryRow(ctx, `
			WITH s AS (SELECT pg_current_snapshot() AS snap, pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax),
			     x AS (SELECT snap, ((xmax >> 32) << 32) | $1::bigint AS id64, xmax FROM s)
			SELECT pg_visible_in_snapshot((CASE WHEN id64 > xmax THEN id64 - 4294967296 ELSE id64 END)::text::xid8, snap) FROM x`, int64(xid)).Scan(&visible)
		if err != nil {
			return fmt.Errorf("wait for transaction %d to be visible: %w", xid, err)
		}
		if visible {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("transaction %d decoded from the slot is still not visible after 30s", xid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
