package verify

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"
	"gopkg.in/inf.v0"

	"github.com/scoop-cdc/scoop/connectors/cassandra"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// cassandraStore compares a Cassandra target. The monolith's rows are read
// in key order as text, turned into the values the sink writes
// (schema.AppendJSON, then cassandra.Value) and hashed; at the same time the
// target is scanned in token order (its mapped columns only) and its rows
// hashed the same way. Both sides sum into buckets by key (flat memory); only
// the buckets that differ are read again to name keys. Timestamps compare at
// Cassandra's millisecond precision.
type cassandraStore struct {
	p       *plan
	src     *pgx.Conn
	session *gocql.Session
	types   schema.TypeMap
	table   string // quoted keyspace.table

	cols    []pipeline.Column // target columns
	cqlType []string          // their CQL types
	srcOID  []uint32          // their monolith type
	keyIdx  []int             // positions of the key columns in cols
	keyOIDs []uint32          // monolith types of the key columns

	selectSrc, selectDst string // one row by key
	scanFirst, scanNext  string // monolith chunks
}

const inFlight = 64

func newCassandraStore(ctx context.Context, p *plan) (*cassandraStore, error) {
	src, err := postgres.Connect(ctx, p.cfg.SourceURL)
	if err != nil {
		return nil, fmt.Errorf("connect to the monolith: %w", err)
	}
	scfg := p.cfg.Cassandra
	scfg.URL = p.cfg.StoreURL
	session, st, err := cassandra.Connect(scfg)
	if err != nil {
		src.Close(context.Background())
		return nil, fmt.Errorf("connect to store %s: %w", p.cfg.Mapping.Store, err)
	}
	s := &cassandraStore{p: p, src: src, session: session,
		table: schema.QuoteIdent(st.Keyspace) + "." + schema.QuoteIdent(p.target.Table)}
	if err := s.prepare(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *cassandraStore) close() {
	s.src.Close(context.Background())
	s.session.Close()
}

func (s *cassandraStore) prepare(ctx context.Context) error {
	t, err := postgres.DescribeTable(ctx, s.src, s.p.table)
	if err != nil {
		return err
	}
	if s.types, err = postgres.LoadTypes(ctx, s.src); err != nil {
		return err
	}
	oid := map[string]uint32{}
	for _, c := range t.Columns {
		oid[c.Name] = c.Type
	}
	var srcCols, dstCols []string
	for _, c := range s.p.target.Columns {
		s.cols = append(s.cols, c)
		s.cqlType = append(s.cqlType, cassandra.CQLType(c))
		s.srcOID = append(s.srcOID, oid[c.Source])
		srcCols = append(srcCols, schema.QuoteIdent(c.Source))
		dstCols = append(dstCols, schema.QuoteIdent(c.Name))
	}
	var srcKeys, dstWhere, srcWhere, marks []string
	for _, k := range s.p.keys {
		for i, c := range s.cols {
			if c.Name == k.Name {
				s.keyIdx = append(s.keyIdx, i)
			}
		}
		s.keyOIDs = append(s.keyOIDs, oid[k.Source])
		srcKeys = append(srcKeys, schema.QuoteIdent(k.Source))
		dstWhere = append(dstWhere, schema.QuoteIdent(k.Name)+" = ?")
		marks = append(marks, fmt.Sprintf("$%d", len(marks)+1))
		srcWhere = append(srcWhere, fmt.Sprintf("%s = $%d", schema.QuoteIdent(k.Source), len(marks)))
	}
	from := " FROM " + schema.QuoteQualified(s.p.table.Schema, s.p.table.Name)
	order := " ORDER BY " + strings.Join(srcKeys, ", ") + fmt.Sprintf(" LIMIT %d", s.p.cfg.ChunkRows)
	s.scanFirst = "SELECT " + strings.Join(srcCols, ", ") + from + order
	s.scanNext = "SELECT " + strings.Join(srcCols, ", ") + from + " WHERE (" + strings.Join(srcKeys, ", ") + ") > (" + strings.Join(marks, ", ") + ")" + order
	s.selectSrc = "SELECT " + strings.Join(srcCols, ", ") + from + " WHERE " + strings.Join(srcWhere, " AND ")
	s.selectDst = "SELECT " + strings.Join(dstCols, ", ") + " FROM " + s.table + " WHERE " + strings.Join(dstWhere, " AND ")
	// The table must exist: a clear error beats one per key.
	if err := s.session.Query("SELECT " + strings.Join(dstCols, ", ") + " FROM " + s.table + " LIMIT 1").WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("read the target table %s: %w", s.table, err)
	}
	return nil
}

// srcRow is a monolith row as the target would hold it.
type srcRow struct {
	key    []string // canonical text of the key columns
	keyVal []any    // the key as Cassandra values
	hash   string
}

// sourceRow converts a monolith row (text values of the target columns).
func (s *cassandraStore) sourceRow(vals [][]byte) srcRow {
	h := md5.New()
	r := srcRow{}
	canon := make([]*string, len(s.cols))
	typed := make([]any, len(s.cols))
	for i, v := range vals {
		if v == nil {
			continue
		}
		raw, err := schema.AppendJSON(nil, s.types, s.srcOID[i], v)
		var val any
		if err == nil {
			val, err = cassandra.Value(s.cols[i], json.RawMessage(raw))
		}
		var c string
		if err != nil {
			c = "!" + err.Error() // the sink cannot write it: never equal
		} else if c2, ok := canonical(s.cqlType[i], val); ok {
			c = c2
		} else {
			continue
		}
		canon[i], typed[i] = &c, val
	}
	writeHash(h, canon)
	r.hash = hex.EncodeToString(h.Sum(nil))
	for _, i := range s.keyIdx {
		r.key = append(r.key, deref(canon[i]))
		r.keyVal = append(r.keyVal, typed[i])
	}
	return r
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// writeHash feeds a row's canonical values to h, each as length:text; (N;
// for NULL), so that no two rows share an input.
func writeHash(h interface{ Write([]byte) (int, error) }, canon []*string) {
	buf := make([]byte, 0, 256)
	for _, c := range canon {
		if c == nil {
			buf = append(buf, "N;"...)
			continue
		}
		buf = strconv.AppendInt(buf, int64(len(*c)), 10)
		buf = append(buf, ':')
		buf = append(buf, *c...)
		buf = append(buf, ';')
	}
	h.Write(buf)
}

// targetHash reads one key's row from Cassandra (nil: no row).
func (s *cassandraStore) targetHash(ctx context.Context, keyVal []any) (*string, error) {
	dests := make([]any, len(s.cols))
	for i, t := range s.cqlType {
		dests[i] = scanDest(t)
	}
	iter := s.session.Query(s.selectDst, keyVal...).WithContext(ctx).Iter()
	found := iter.Scan(dests...)
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.table, err)
	}
	if !found {
		return nil, nil
	}
	canon := make([]*string, len(s.cols))
	for i, d := range dests {
		if c, ok := canonical(s.cqlType[i], d); ok {
			canon[i] = &c
		}
	}
	h := md5.New()
	writeHash(h, canon)
	out := hex.EncodeToString(h.Sum(nil))
	return &out, nil
}

// buckets is a table's digest: rows are spread over buckets by a hash of
// their key, and each bucket keeps its row count and the sum of its rows'
// hashes, so both stores can be read in any order with flat memory.
type buckets struct {
	count []int64
	sum   []uint64
}

const nBuckets = 4096

func newBuckets() *buckets {
	return &buckets{count: make([]int64, nBuckets), sum: make([]uint64, nBuckets)}
}

func bucketOf(key []string) int {
	h := fnv.New64a()
	for _, k := range key {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return int(h.Sum64() % nBuckets)
}

func (b *buckets) add(key []string, hash string) {
	i := bucketOf(key)
	b.count[i]++
	v, _ := strconv.ParseUint(hash[:16], 16, 64)
	b.sum[i] += v
}

// eachSource streams the monolith's rows (key, hash) in key order, in
// chunks of ChunkRows (short transactions).
func (s *cassandraStore) eachSource(ctx context.Context, fn func(key []string, hash string)) error {
	var last [][]byte
	for {
		var rr *pgconn.ResultReader
		if last == nil {
			rr = s.src.PgConn().ExecParams(ctx, s.scanFirst, nil, nil, nil, nil)
		} else {
			rr = s.src.PgConn().ExecParams(ctx, s.scanNext, last, s.keyOIDs, nil, nil)
		}
		n := 0
		var lastKey [][]byte
		for rr.NextRow() {
			v := rr.Values()
			r := s.sourceRow(v)
			fn(r.key, r.hash)
			lastKey = lastKey[:0]
			for _, i := range s.keyIdx {
				lastKey = append(lastKey, append([]byte(nil), v[i]...))
			}
			n++
		}
		if _, err := rr.Close(); err != nil {
			return fmt.Errorf("read the monolith table %s: %w", s.p.table, err)
		}
		if err := s.p.limiter.take(ctx, n); err != nil {
			return err
		}
		if n < s.p.cfg.ChunkRows {
			return nil
		}
		last = lastKey
	}
}

// eachTarget streams the target's rows (key, hash) in token order: one
// scan of the mapped columns, paged.
func (s *cassandraStore) eachTarget(ctx context.Context, fn func(key []string, hash string)) error {
	var cols []string
	for _, c := range s.cols {
		cols = append(cols, schema.QuoteIdent(c.Name))
	}
	iter := s.session.Query("SELECT " + strings.Join(cols, ", ") + " FROM " + s.table).WithContext(ctx).PageSize(5000).Iter()
	dests := make([]any, len(s.cols))
	canon := make([]*string, len(s.cols))
	h := md5.New()
	n := 0
	for {
		for i, t := range s.cqlType {
			dests[i] = scanDest(t)
		}
		if !iter.Scan(dests...) {
			break
		}
		key := make([]string, len(s.keyIdx))
		for i, d := range dests {
			canon[i] = nil
			if c, ok := canonical(s.cqlType[i], d); ok {
				canon[i] = &c
			}
		}
		for j, i := range s.keyIdx {
			key[j] = deref(canon[i])
		}
		h.Reset()
		writeHash(h, canon)
		fn(key, hex.EncodeToString(h.Sum(nil)))
		if n++; n == 1000 {
			if err := s.p.limiter.take(ctx, n); err != nil {
				iter.Close()
				return err
			}
			n = 0
		}
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("scan %s: %w", s.table, err)
	}
	return nil
}

// scan reads both stores at once into bucket digests; the buckets that
// differ are read again, keeping only their rows, to name the keys.
func (s *cassandraStore) scan(ctx context.Context, suspect func(Diff)) error {
	src, dst := newBuckets(), newBuckets()
	var rows int64
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return s.eachSource(gctx, func(key []string, hash string) { src.add(key, hash); rows++ })
	})
	g.Go(func() error {
		return s.eachTarget(gctx, func(key []string, hash string) { dst.add(key, hash) })
	})
	if err := g.Wait(); err != nil {
		return err
	}
	s.p.rows = rows
	var bad []int
	for i := range nBuckets {
		if src.count[i] != dst.count[i] || src.sum[i] != dst.sum[i] {
			bad = append(bad, i)
		}
	}
	// A few buckets per pass keep memory bounded when many differ.
	const perPass = 256
	for start := 0; start < len(bad); start += perPass {
		if err := s.diffBuckets(ctx, bad[start:min(start+perPass, len(bad))], suspect); err != nil {
			return err
		}
	}
	return nil
}

// diffBuckets names the differing keys of some buckets: the monolith's rows
// of those buckets in memory, the target's compared with them as they come.
func (s *cassandraStore) diffBuckets(ctx context.Context, bad []int, suspect func(Diff)) error {
	want := map[int]bool{}
	for _, b := range bad {
		want[b] = true
	}
	type row struct {
		key  []string
		hash string
		seen bool
	}
	src := map[string]*row{}
	if err := s.eachSource(ctx, func(key []string, hash string) {
		if want[bucketOf(key)] {
			src[strings.Join(key, "\x00")] = &row{key: key, hash: hash}
		}
	}); err != nil {
		return err
	}
	if err := s.eachTarget(ctx, func(key []string, hash string) {
		if !want[bucketOf(key)] {
			return
		}
		r, ok := src[strings.Join(key, "\x00")]
		switch {
		case !ok:
			suspect(Diff{Kind: Extra, Key: s.p.key(key)})
			return
		case r.hash != hash:
			suspect(Diff{Kind: Different, Key: s.p.key(key)})
		}
		r.seen = true
	}); err != nil {
		return err
	}
	for _, r := range src {
		if !r.seen {
			suspect(Diff{Kind: Missing, Key: s.p.key(r.key)})
		}
	}
	return nil
}

// sourceHashes reads the keys' rows in the reference: the monolith in one
// snapshot, or, once the mapping was flipped, Cassandra (no position: the
// service publishes each write before making it, so the reverse topic's
// end, read after this, covers every row read).
func (s *cassandraStore) sourceHashes(ctx context.Context, keys []Key) ([]*string, string, error) {
	if s.p.cfg.ServiceOwns {
		h, err := s.cassandraHashes(ctx, keys)
		return h, "", err
	}
	return snapshotRead(ctx, s.src, "monolith", func() ([]*string, error) { return s.monolithHashes(ctx, keys) })
}

// targetHashes reads the keys' rows in the copy the reference feeds.
func (s *cassandraStore) targetHashes(ctx context.Context, keys []Key) ([]*string, error) {
	if s.p.cfg.ServiceOwns {
		return s.monolithHashes(ctx, keys)
	}
	return s.cassandraHashes(ctx, keys)
}

// monolithHashes reads the keys' rows in the monolith.
func (s *cassandraStore) monolithHashes(ctx context.Context, keys []Key) ([]*string, error) {
	b := &pgconn.Batch{}
	for _, k := range keys {
		args := make([][]byte, len(k.Values))
		for i, v := range k.Values {
			args[i] = []byte(v)
		}
		b.ExecParams(s.selectSrc, args, s.keyOIDs, nil, nil)
	}
	results, err := s.src.PgConn().ExecBatch(ctx, b).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("compare keys in the monolith: %w", err)
	}
	out := make([]*string, len(keys))
	for i, r := range results {
		if len(r.Rows) > 0 {
			h := s.sourceRow(r.Rows[0]).hash
			out[i] = &h
		}
	}
	return out, nil
}

// cassandraHashes reads the keys' rows in Cassandra.
func (s *cassandraStore) cassandraHashes(ctx context.Context, keys []Key) ([]*string, error) {
	out := make([]*string, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	for n, k := range keys {
		keyVal := make([]any, len(k.Values))
		for j, i := range s.keyIdx {
			v, err := keyValue(s.cols[i], s.cqlType[i], k.Values[j])
			if err != nil {
				return nil, fmt.Errorf("compare key %s: %w", k, err)
			}
			keyVal[j] = v
		}
		g.Go(func() error {
			h, err := s.targetHash(gctx, keyVal)
			out[n] = h
			return err
		})
	}
	return out, g.Wait()
}

// keyValue turns a key's canonical text back into a Cassandra value.
func keyValue(col pipeline.Column, typ, text string) (any, error) {
	if typ == "blob" {
		return hex.DecodeString(strings.TrimPrefix(text, `\x`))
	}
	raw, _ := json.Marshal(text)
	return cassandra.Value(col, raw)
}

// scanDest is where gocql reads a value of a CQL type; pointers to
// pointers (and nil slices) tell NULL apart.
func scanDest(typ string) any {
	switch typ {
	case "smallint":
		return new(*int16)
	case "int":
		return new(*int32)
	case "bigint":
		return new(*int64)
	case "float":
		return new(*float32)
	case "double":
		return new(*float64)
	case "boolean":
		return new(*bool)
	case "decimal":
		return new(*inf.Dec)
	case "uuid":
		return new(*gocql.UUID)
	case "timestamp", "date":
		return new(*time.Time)
	case "blob":
		return new([]byte)
	case "list<smallint>":
		return new([]int16)
	case "list<int>":
		return new([]int32)
	case "list<bigint>":
		return new([]int64)
	case "list<float>":
		return new([]float32)
	case "list<double>":
		return new([]float64)
	case "list<boolean>":
		return new([]bool)
	case "list<decimal>":
		return new([]*inf.Dec)
	case "list<uuid>":
		return new([]gocql.UUID)
	case "list<timestamp>", "list<date>":
		return new([]time.Time)
	case "list<blob>":
		return new([][]byte)
	case "list<text>":
		return new([]string)
	}
	return new(*string)
}

// canonical is the text a value is compared by, for a CQL type; false for
// NULL (an empty list is NULL in Cassandra).
func canonical(typ string, v any) (string, bool) {
	rv := reflect.ValueOf(v)
	for rv.IsValid() && (rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface) {
		if rv.IsNil() {
			return "", false
		}
		if _, ok := rv.Interface().(*inf.Dec); ok {
			break
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		return "", false
	}
	if elem, ok := strings.CutPrefix(typ, "list<"); ok && rv.Kind() == reflect.Slice {
		elem = strings.TrimSuffix(elem, ">")
		if rv.Len() == 0 {
			return "", false
		}
		var sb strings.Builder
		sb.WriteByte('[')
		for i := range rv.Len() {
			c, ok := canonical(elem, rv.Index(i).Interface())
			if !ok {
				sb.WriteString("N;")
				continue
			}
			fmt.Fprintf(&sb, "%d:%s;", len(c), c)
		}
		sb.WriteByte(']')
		return sb.String(), true
	}
	switch x := rv.Interface().(type) {
	case int16:
		return strconv.FormatInt(int64(x), 10), true
	case int32:
		return strconv.FormatInt(int64(x), 10), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	case *inf.Dec:
		return x.String(), true
	case gocql.UUID:
		return x.String(), true
	case time.Time:
		if typ == "date" {
			return x.UTC().Format("2006-01-02"), true
		}
		return x.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z"), true
	case []byte:
		if x == nil {
			return "", false
		}
		return `\x` + hex.EncodeToString(x), true
	case string:
		return x, true
	}
	return fmt.Sprint(rv.Interface()), true
}
