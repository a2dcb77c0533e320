package verify

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// pgStore compares a PostgreSQL target. Both databases render each column
// as its text in the target's column type, in sessions with the same
// settings (postgres.Connect); a range's hash is its count and the sum of
// its rows' 64-bit hashes (rowHash), so no sort is needed. Rows of a range
// that differs are compared by md5 of ROW(columns...)::text. The monolith's
// value of a converted column is cast to the target type from the text the
// sink would have written (the value's form in the change event), so equal
// data renders equal.
type pgStore struct {
	p        *plan
	src, dst *pgx.Conn
	side     [2]pgSide
}

// pgSide is one database's queries.
type pgSide struct {
	table   string   // quoted schema.table
	keys    []string // quoted key columns, in target key order
	keyOIDs []uint32
	row     string // ROW(...)::text expression, for md5 of single rows
	hash    string // rowHash of the columns, for range sums
	name    string // "monolith" or "target", for errors
}

func newPGStore(ctx context.Context, p *plan) (*pgStore, error) {
	src, err := postgres.Connect(ctx, p.cfg.SourceURL)
	if err != nil {
		return nil, fmt.Errorf("connect to the monolith: %w", err)
	}
	dst, err := postgres.Connect(ctx, p.cfg.StoreURL)
	if err != nil {
		src.Close(context.Background())
		return nil, fmt.Errorf("connect to store %s: %w", p.cfg.Mapping.Store, err)
	}
	s := &pgStore{p: p, src: src, dst: dst}
	if err := s.prepare(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *pgStore) close() {
	s.src.Close(context.Background())
	s.dst.Close(context.Background())
}

func (s *pgStore) prepare(ctx context.Context) error {
	srcTable, err := postgres.DescribeTable(ctx, s.src, s.p.table)
	if err != nil {
		return err
	}
	srcOID := map[string]uint32{}
	for _, c := range srcTable.Columns {
		srcOID[c.Name] = c.Type
	}
	target := schema.QuoteQualified("public", s.p.target.Table)
	dstOID := map[string]uint32{}
	rows, err := s.dst.Query(ctx, `SELECT attname, atttypid FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, target)
	if err != nil {
		return fmt.Errorf("read the target table %s: %w", target, err)
	}
	for rows.Next() {
		var n string
		var oid uint32
		if err := rows.Scan(&n, &oid); err != nil {
			rows.Close()
			return fmt.Errorf("read the target table %s: %w", target, err)
		}
		dstOID[n] = oid
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the target table %s: %w", target, err)
	}
	if len(dstOID) == 0 {
		return fmt.Errorf("the target table %s does not exist in store %s (has scoop run created it?)", target, s.p.cfg.Mapping.Store)
	}
	src := pgSide{table: schema.QuoteQualified(s.p.table.Schema, s.p.table.Name), name: "monolith"}
	dst := pgSide{table: target, name: "target " + target}
	var srcExprs, dstExprs []string
	for _, c := range s.p.target.Columns {
		if _, ok := dstOID[c.Name]; !ok {
			return fmt.Errorf("the target table %s has no column %q (has scoop run caught up with the mapping?)", target, c.Name)
		}
		dstExprs = append(dstExprs, "s."+schema.QuoteIdent(c.Name))
		e, err := sourceExpr(s.p.sources[c.Source], c, s.p.cfg.Mapping.Columns.Types)
		if err != nil {
			return err
		}
		srcExprs = append(srcExprs, e)
	}
	for _, k := range s.p.keys {
		src.keys = append(src.keys, schema.QuoteIdent(k.Source))
		src.keyOIDs = append(src.keyOIDs, srcOID[k.Source])
		dst.keys = append(dst.keys, schema.QuoteIdent(k.Name))
		dst.keyOIDs = append(dst.keyOIDs, dstOID[k.Name])
	}
	src.row = "ROW(" + strings.Join(srcExprs, ", ") + ")::text"
	dst.row = "ROW(" + strings.Join(dstExprs, ", ") + ")::text"
	src.hash, dst.hash = rowHash(srcExprs), rowHash(dstExprs)
	s.side = [2]pgSide{src, dst}
	return nil
}

// rowHash is a 64-bit hash of a row's columns, each in its text form
// (bytewise: collation "C"), chained: each column's hash is seeded with the
// hash of the columns before it, so the hash depends on every value and on
// its place. A NULL hashes as the empty text under a seed with its lowest
// bit flipped, so it differs from an empty string. It renders the same text
// as ROW(...)::text without record_out's quoting pass, which costs as much as
// the columns' own output (about half of the query's time).
func rowHash(exprs []string) string {
	seed := "0::int8"
	for _, e := range exprs {
		seed = fmt.Sprintf(`hashtextextended(coalesce((%[1]s)::text COLLATE "C", ''), %[2]s # ((%[1]s) IS NULL)::int::int8)`, e, seed)
	}
	return seed
}

// sourceExpr renders a monolith column as the target column holds it.
func sourceExpr(src, dst pipeline.Column, types map[string]string) (string, error) {
	col := "s." + schema.QuoteIdent(src.Source)
	if _, converted := types[src.Source]; !converted {
		return col, nil
	}
	// The sink casts the text of the value in the change event: reproduce
	// that text (schema.AppendJSON, then the sink's scalarText).
	var text string
	switch {
	case src.Array:
		if dst.BaseType != "text" && dst.BaseType != "jsonb" {
			return "", fmt.Errorf("%w: array column %q converted to %s", ErrUnsupported, src.Source, dst.SQLType)
		}
		text = "array_to_json(" + col + ")::text"
	case src.BaseType == "bytea":
		text = `translate(encode(` + col + `, 'base64'), E'\n', '')`
	case src.BaseType == "timestamptz", src.BaseType == "timestamp":
		zone := ""
		if src.BaseType == "timestamptz" {
			zone = "Z"
		}
		// "2006-01-02 15:04:05.1+00" -> "2006-01-02T15:04:05.1Z"; infinity
		// and BC dates keep their text.
		text = fmt.Sprintf(`CASE WHEN %[1]s::text ~ '^\d{4}-\d\d-\d\d \d' AND %[1]s::text !~ ' BC$' THEN regexp_replace(regexp_replace(%[1]s::text, '^(\d{4}-\d\d-\d\d) ', '\1T'), '\+00$', '%[2]s') ELSE %[1]s::text END`, col, zone)
	case src.BaseType == "interval":
		// Debezium's string form names every field: "P0Y0M1DT0H0M0S".
		text = fmt.Sprintf(`format('P%%sY%%sM%%sDT%%sH%%sM%%sS', extract(year from %[1]s)::int8, extract(month from %[1]s)::int8, extract(day from %[1]s)::int8, extract(hour from %[1]s)::int8, extract(minute from %[1]s)::int8, trim_scale(extract(second from %[1]s)))`, col)
	case src.BaseType == "timetz":
		// ISO 8601 offsets: "+00" -> "Z", "+05" -> "+05:00".
		text = fmt.Sprintf(`regexp_replace(regexp_replace(%s::text, '\+00$', 'Z'), '([+-]\d\d)$', '\1:00')`, col)
	default:
		text = col + "::text"
	}
	return "CAST(" + text + " AS " + dst.SQLType + ")", nil
}

// rangeWhere is the predicate lo < key <= hi (nil: unbounded), with its
// parameters numbered from 1.
func (sd *pgSide) rangeWhere(lo, hi []string) (string, [][]byte, []uint32) {
	var conds []string
	var args [][]byte
	var oids []uint32
	tuple := "(" + strings.Join(sd.keys, ", ") + ")"
	bound := func(op string, vals []string) {
		marks := make([]string, len(vals))
		for i, v := range vals {
			args = append(args, []byte(v))
			oids = append(oids, sd.keyOIDs[i])
			marks[i] = fmt.Sprintf("$%d", len(args))
		}
		conds = append(conds, tuple+" "+op+" ("+strings.Join(marks, ", ")+")")
	}
	if lo != nil {
		bound(">", lo)
	}
	if hi != nil {
		bound("<=", hi)
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, oids
}

// boundary returns the key chunk rows after lo in the monolith (nil when
// fewer rows remain).
func (s *pgStore) boundary(ctx context.Context, lo []string) ([]string, error) {
	sd := &s.side[0]
	where, args, oids := sd.rangeWhere(lo, nil)
	q := fmt.Sprintf("SELECT %s FROM %s s%s ORDER BY %s OFFSET %d LIMIT 1", strings.Join(sd.keys, ", "), sd.table, where, strings.Join(sd.keys, ", "), s.p.cfg.ChunkRows-1)
	rr := s.src.PgConn().ExecParams(ctx, q, args, oids, nil, nil)
	var out []string
	for rr.NextRow() {
		out = texts(rr.Values())
	}
	if _, err := rr.Close(); err != nil {
		return nil, fmt.Errorf("read key ranges of the monolith: %w", err)
	}
	return out, nil
}

func texts(vals [][]byte) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return out
}

// rangeHash is a range's row count and hash sum in one database.
func (s *pgStore) rangeHash(ctx context.Context, conns [2]*pgx.Conn, side int, lo, hi []string) (count, sum string, err error) {
	sd := &s.side[side]
	conn := conns[side]
	where, args, oids := sd.rangeWhere(lo, hi)
	// A 64-bit hash of each row (rowHash), summed.
	q := fmt.Sprintf(`SELECT count(*), coalesce(sum(%s), 0) FROM %s s%s`, sd.hash, sd.table, where)
	rr := conn.PgConn().ExecParams(ctx, q, args, oids, nil, nil)
	for rr.NextRow() {
		v := rr.Values()
		count, sum = string(v[0]), string(v[1])
	}
	if _, err := rr.Close(); err != nil {
		return "", "", fmt.Errorf("hash a key range of the %s: %w", sd.name, err)
	}
	return count, sum, nil
}

// rowHashes streams a range's keys and row hashes from one database.
func (s *pgStore) rowHashes(ctx context.Context, conns [2]*pgx.Conn, side int, lo, hi []string, fn func(key []string, hash string)) error {
	sd := &s.side[side]
	conn := conns[side]
	where, args, oids := sd.rangeWhere(lo, hi)
	q := fmt.Sprintf("SELECT %s, md5(%s) FROM %s s%s", strings.Join(sd.keys, ", "), sd.row, sd.table, where)
	rr := conn.PgConn().ExecParams(ctx, q, args, oids, nil, nil)
	for rr.NextRow() {
		v := rr.Values()
		fn(texts(v[:len(v)-1]), string(v[len(v)-1]))
	}
	if _, err := rr.Close(); err != nil {
		return fmt.Errorf("read rows of the %s: %w", sd.name, err)
	}
	return nil
}

// scan walks the key ranges: the monolith's primary-key index gives the
// bounds (one session), pgWorkers pairs of sessions hash ranges at once.
func (s *pgStore) scan(ctx context.Context, suspect func(Diff)) error {
	var mu sync.Mutex
	report := func(d Diff) { mu.Lock(); defer mu.Unlock(); suspect(d) }
	type keyRange struct{ lo, hi []string }
	ranges := make(chan keyRange, pgWorkers)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(ranges)
		var lo []string
		for {
			hi, err := s.boundary(gctx, lo)
			if err != nil {
				return err
			}
			select {
			case ranges <- keyRange{lo, hi}:
			case <-gctx.Done():
				return gctx.Err()
			}
			if hi == nil {
				return nil
			}
			lo = hi
		}
	})
	var rows atomic.Int64
	for range pgWorkers {
		g.Go(func() error {
			var conns [2]*pgx.Conn
			for side, url := range []string{s.p.cfg.SourceURL, s.p.cfg.StoreURL} {
				c, err := postgres.Connect(gctx, url)
				if err != nil {
					return fmt.Errorf("connect to the %s: %w", s.side[side].name, err)
				}
				defer c.Close(context.Background())
				conns[side] = c
			}
			for r := range ranges {
				n, err := s.compareRange(gctx, conns, r.lo, r.hi, report)
				if err != nil {
					return err
				}
				rows.Add(n)
			}
			return nil
		})
	}
	err := g.Wait()
	s.p.rows = rows.Load()
	return err
}

const pgWorkers = 2

// compareRange hashes one range in both databases at once and, when they
// differ, names its differing keys; it returns the monolith's row count.
func (s *pgStore) compareRange(ctx context.Context, conns [2]*pgx.Conn, lo, hi []string, suspect func(Diff)) (int64, error) {
	var h [2][2]string
	var g errgroup.Group
	for side := range 2 {
		g.Go(func() (err error) {
			h[side][0], h[side][1], err = s.rangeHash(ctx, conns, side, lo, hi)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	var n int
	fmt.Sscan(h[0][0], &n)
	if err := s.p.limiter.take(ctx, n); err != nil {
		return 0, err
	}
	if h[0] != h[1] {
		if err := s.diffRange(ctx, conns, lo, hi, suspect); err != nil {
			return 0, err
		}
	}
	return int64(n), nil
}

// diffRange reads a range whose hashes differ row by row: the monolith's
// rows (at most ChunkRows) in memory, the target's streamed past them.
func (s *pgStore) diffRange(ctx context.Context, conns [2]*pgx.Conn, lo, hi []string, suspect func(Diff)) error {
	src := map[string]string{}
	keys := map[string][]string{}
	if err := s.rowHashes(ctx, conns, 0, lo, hi, func(key []string, hash string) {
		id := strings.Join(key, "\x00")
		src[id], keys[id] = hash, key
	}); err != nil {
		return err
	}
	seen := map[string]bool{}
	if err := s.rowHashes(ctx, conns, 1, lo, hi, func(key []string, hash string) {
		id := strings.Join(key, "\x00")
		h, ok := src[id]
		switch {
		case !ok:
			suspect(Diff{Kind: Extra, Key: s.p.key(key)})
		case h != hash:
			suspect(Diff{Kind: Different, Key: s.p.key(key)})
		}
		seen[id] = true
	}); err != nil {
		return err
	}
	for id, key := range keys {
		if !seen[id] {
			suspect(Diff{Kind: Missing, Key: s.p.key(key)})
		}
	}
	return nil
}

// sourceHashes reads the keys' rows in the reference (the monolith, or the
// service once the mapping was flipped) in one snapshot.
func (s *pgStore) sourceHashes(ctx context.Context, keys []Key) ([]*string, string, error) {
	if s.p.cfg.ServiceOwns {
		return snapshotRead(ctx, s.dst, "service", func() ([]*string, error) { return s.keyHashes(ctx, 1, keys) })
	}
	return snapshotRead(ctx, s.src, "monolith", func() ([]*string, error) { return s.keyHashes(ctx, 0, keys) })
}

// targetHashes reads the keys' rows in the copy the reference feeds.
func (s *pgStore) targetHashes(ctx context.Context, keys []Key) ([]*string, error) {
	if s.p.cfg.ServiceOwns {
		return s.keyHashes(ctx, 0, keys)
	}
	return s.keyHashes(ctx, 1, keys)
}

// snapshotRead runs read in a repeatable-read transaction and returns the
// WAL position every commit visible to it precedes.
func snapshotRead[T any](ctx context.Context, conn *pgx.Conn, name string, read func() (T, error)) (T, string, error) {
	var zero T
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return zero, "", fmt.Errorf("read the %s: %w", name, err)
	}
	defer tx.Rollback(context.Background())
	var lsn string
	if err := tx.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		return zero, "", fmt.Errorf("read the %s's WAL position: %w", name, err)
	}
	out, err := read()
	if err != nil {
		return zero, "", err
	}
	return out, lsn, tx.Commit(ctx)
}

// keyHashes reads each key's row hash in one database (nil: no row), in
// one round trip.
func (s *pgStore) keyHashes(ctx context.Context, side int, keys []Key) ([]*string, error) {
	sd := &s.side[side]
	conn := []*pgx.Conn{s.src, s.dst}[side]
	conds := make([]string, len(sd.keys))
	for i, kc := range sd.keys {
		conds[i] = fmt.Sprintf("%s = $%d", kc, i+1)
	}
	q := fmt.Sprintf("SELECT md5(%s) FROM %s s WHERE %s", sd.row, sd.table, strings.Join(conds, " AND "))
	b := &pgconn.Batch{}
	for _, k := range keys {
		args := make([][]byte, len(k.Values))
		for i, v := range k.Values {
			args[i] = []byte(v)
		}
		b.ExecParams(q, args, sd.keyOIDs, nil, nil)
	}
	results, err := conn.PgConn().ExecBatch(ctx, b).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("compare keys in the %s: %w", sd.name, err)
	}
	out := make([]*string, len(keys))
	for i, r := range results {
		if len(r.Rows) > 0 {
			h := string(r.Rows[0][0])
			out[i] = &h
		}
	}
	return out, nil
}
