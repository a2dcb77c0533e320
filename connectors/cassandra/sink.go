package cassandra

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"
	"gopkg.in/inf.v0"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// SinkConfig configures a mapping's Cassandra sink.
type SinkConfig struct {
	URL         string // cassandra://host:port/keyspace[?replication_factor=N]
	Mapping     string
	Target      pipeline.Target
	MaxInFlight int // concurrent writes (default 64)
	Username    string
	Password    string
	TLS         bool // client encryption, verified against CAFile or the system roots
	CAFile      string
	Logger      *slog.Logger
}

// Store is a parsed cassandra:// URL.
type Store struct {
	Hosts             []string
	Port              int
	Keyspace          string
	ReplicationFactor int
}

// keyspaceRe is what Cassandra accepts as a keyspace name, quoted or not;
// checked up front so that a bad name stops the start, not each mapping.
var keyspaceRe = regexp.MustCompile(`^[A-Za-z0-9_]{1,48}$`)

// ParseURL parses cassandra://host[,host]:port/keyspace.
func ParseURL(raw string) (Store, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Store{}, fmt.Errorf("cassandra URL: %w", err)
	}
	if u.Scheme != "cassandra" {
		return Store{}, fmt.Errorf("cassandra URL %q: scheme must be cassandra://", raw)
	}
	st := Store{Port: 9042, Keyspace: strings.Trim(u.Path, "/"), ReplicationFactor: 1}
	if st.Keyspace == "" {
		return Store{}, fmt.Errorf("cassandra URL %q: no keyspace; use cassandra://host:9042/keyspace", raw)
	}
	if !keyspaceRe.MatchString(st.Keyspace) {
		return Store{}, fmt.Errorf("cassandra URL %q: keyspace %q is not one Cassandra accepts: use 1 to 48 letters, digits or _", raw, st.Keyspace)
	}
	for _, h := range strings.Split(u.Host, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host = h
		} else if p, err := strconv.Atoi(port); err == nil {
			st.Port = p
		}
		st.Hosts = append(st.Hosts, host)
	}
	if rf := u.Query().Get("replication_factor"); rf != "" {
		if st.ReplicationFactor, err = strconv.Atoi(rf); err != nil || st.ReplicationFactor < 1 {
			return Store{}, fmt.Errorf("cassandra URL %q: replication_factor must be a positive number", raw)
		}
	}
	return st, nil
}

// Sink writes changes into a Cassandra table.
type Sink struct {
	cfg      SinkConfig
	session  *gocql.Session
	table    string // quoted keyspace.table
	keyspace string
	cols     map[string]pipeline.Column
	keys     []pipeline.Column
	// names are the target's columns, sorted: the order of an INSERT's
	// columns (as Change.WrittenColumns gives them).
	names []string
	// inserts caches the INSERT of each set of written columns (a bit per
	// names[i]); deleteStmt is the one DELETE. Only Apply's goroutine uses them.
	inserts    map[uint64]string
	deleteStmt string
}

// CQLType maps a monolith column to its Cassandra type (docs/cassandra.md).
func CQLType(c pipeline.Column) string {
	if c.Array {
		if t := scalarCQL(c.Elem); t != "text" || c.Elem == "text" || c.Elem == "varchar" {
			return "list<" + t + ">"
		}
		return "text" // arrays of other types travel as their JSON text
	}
	return scalarCQL(c.BaseType)
}

func scalarCQL(base string) string {
	switch base {
	case "int2":
		return "smallint"
	case "int4":
		return "int"
	case "int8":
		return "bigint"
	case "float4":
		return "float"
	case "float8":
		return "double"
	case "bool":
		return "boolean"
	case "numeric":
		return "decimal"
	case "uuid":
		return "uuid"
	case "timestamptz", "timestamp":
		return "timestamp"
	case "date":
		return "date"
	case "bytea":
		return "blob"
	}
	return "text"
}

// NewSink connects, and creates the keyspace and table when missing.
func NewSink(ctx context.Context, cfg SinkConfig) (*Sink, error) {
	st, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cluster := gocql.NewCluster(st.Hosts...)
	cluster.Port = st.Port
	cluster.Consistency = gocql.LocalQuorum
	cluster.Timeout = 10 * time.Second
	cluster.ConnectTimeout = 10 * time.Second
	cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	// Come back quickly after the store was down; the consumer retries meanwhile.
	cluster.ReconnectInterval = time.Second
	cluster.ReconnectionPolicy = &gocql.ConstantReconnectionPolicy{MaxRetries: 1 << 30, Interval: time.Second}
	if cfg.TLS {
		cluster.SslOpts = &gocql.SslOptions{CaPath: cfg.CAFile, EnableHostVerification: true}
	}
	if cfg.Username != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password}
	}
	session, err := cluster.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("mapping %s: connect to Cassandra %v: %w", cfg.Mapping, st.Hosts, err)
	}
	s := &Sink{cfg: cfg, session: session, cols: map[string]pipeline.Column{}, keyspace: st.Keyspace,
		table: schema.QuoteIdent(st.Keyspace) + "." + schema.QuoteIdent(cfg.Target.Table)}
	for _, c := range cfg.Target.Columns {
		if err := schema.CheckIdent(c.Name); err != nil {
			session.Close()
			return nil, fmt.Errorf("mapping %s: %w", cfg.Mapping, err)
		}
		s.cols[c.Name] = c
	}
	s.keys = cfg.Target.KeyColumns()
	for n := range s.cols {
		s.names = append(s.names, n)
	}
	sort.Strings(s.names)
	s.inserts = map[uint64]string{}
	where := make([]string, len(s.keys))
	for i, k := range s.keys {
		where[i] = schema.QuoteIdent(k.Name) + " = ?"
	}
	s.deleteStmt = "DELETE FROM " + s.table + " USING TIMESTAMP ? WHERE " + strings.Join(where, " AND ")
	if err := s.ensureTable(ctx, st); err != nil {
		session.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sink) ensureTable(ctx context.Context, st Store) error {
	ks := fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': %d}",
		schema.QuoteIdent(st.Keyspace), st.ReplicationFactor)
	if err := s.session.Query(ks).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("mapping %s: create keyspace %s: %w", s.cfg.Mapping, st.Keyspace, err)
	}
	existing := map[string]string{}
	iter := s.session.Query(`SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?`, st.Keyspace, s.cfg.Target.Table).WithContext(ctx).Iter()
	var name, typ string
	for iter.Scan(&name, &typ) {
		existing[name] = typ
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("mapping %s: read table %s: %w", s.cfg.Mapping, s.cfg.Target.Table, err)
	}
	if len(existing) == 0 {
		var defs, keys []string
		for _, c := range s.cfg.Target.Columns {
			defs = append(defs, schema.QuoteIdent(c.Name)+" "+CQLType(c))
			if c.Key {
				keys = append(keys, schema.QuoteIdent(c.Name))
			}
		}
		ddl := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s, PRIMARY KEY ((%s)))", s.table, strings.Join(defs, ", "), strings.Join(keys, ", "))
		if err := s.session.Query(ddl).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("mapping %s: create table: %w", s.cfg.Mapping, err)
		}
		s.cfg.Logger.Info("created Cassandra table", "mapping", s.cfg.Mapping, "table", s.table)
		return nil
	}
	return s.evolveTable(ctx, existing)
}

// evolveTable adds the columns the source gained to an existing table
// (Cassandra columns are all nullable; columns the source lost are simply no
// longer written). A type scoop would not write, or a missing key column, is
// refused with what to do (ErrSchemaMismatch): Cassandra cannot change a
// column's type.
func (s *Sink) evolveTable(ctx context.Context, existing map[string]string) error {
	var problems []string
	var adds []pipeline.Column
	for _, c := range s.cfg.Target.Columns {
		got, ok := existing[c.Name]
		want := CQLType(c)
		switch {
		case !ok && c.Key:
			problems = append(problems, fmt.Sprintf("key column %q is missing (the primary key changed: map the table to a new target)", c.Name))
		case !ok:
			adds = append(adds, c)
		case got != want:
			problems = append(problems, fmt.Sprintf("column %q is %s but scoop writes %s (fix: Cassandra cannot change a column's type: rename it in the mapping with columns.rename so scoop adds a new column, or ALTER TABLE %s DROP %s; ALTER TABLE %s ADD %s %s and replay the mapping)",
				c.Name, got, want, s.table, schema.QuoteIdent(c.Name), s.table, schema.QuoteIdent(c.Name), want))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("mapping %s: %w: table %s: %s", s.cfg.Mapping, pipeline.ErrSchemaMismatch, s.table, strings.Join(problems, "; "))
	}
	for _, c := range adds {
		ddl := fmt.Sprintf("ALTER TABLE %s ADD %s %s", s.table, schema.QuoteIdent(c.Name), CQLType(c))
		if err := s.session.Query(ddl).WithContext(ctx).Exec(); err != nil {
			// Another instance of the mapping may have added it meanwhile.
			var typ string
			if qerr := s.session.Query(`SELECT type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = ?`,
				s.keyspace, s.cfg.Target.Table, c.Name).WithContext(ctx).Scan(&typ); qerr == nil && typ == CQLType(c) {
				continue
			}
			return fmt.Errorf("mapping %s: follow the source's columns (%s): %w", s.cfg.Mapping, ddl, err)
		}
		s.cfg.Logger.Info("Cassandra table follows the source's columns", "mapping", s.cfg.Mapping, "table", s.table, "ddl", ddl)
	}
	return nil
}

// Apply writes a batch: the last change of each key, with USING TIMESTAMP.
func (s *Sink) Apply(ctx context.Context, batch []pipeline.Change) error {
	if err := pipeline.CheckColumns(batch, s.cols); err != nil {
		return fmt.Errorf("mapping %s: %w", s.cfg.Mapping, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.MaxInFlight)
	for _, c := range pipeline.Collapse(batch) {
		if c.Op == schema.OpTruncate {
			if err := g.Wait(); err != nil {
				return err
			}
			if err := s.session.Query("TRUNCATE " + s.table).WithContext(ctx).Exec(); err != nil {
				return fmt.Errorf("truncate %s: %w", s.table, err)
			}
			g, gctx = errgroup.WithContext(ctx)
			g.SetLimit(s.cfg.MaxInFlight)
			continue
		}
		stmt, args, err := s.statement(c)
		if err != nil {
			return pipeline.Permanent(fmt.Errorf("offset %d/%d: %w", c.Partition, c.Offset, err))
		}
		g.Go(func() error {
			if err := s.session.Query(stmt, args...).WithContext(gctx).Exec(); err != nil {
				return classify(fmt.Errorf("write %s: %w", s.table, err))
			}
			return nil
		})
	}
	return g.Wait()
}

// classify: invalid queries and bad values cannot be fixed by retrying;
// a table, keyspace or column the store does not know is its schema, not
// the event's fault, and is retried (see schemaNotLive).
func classify(err error) error {
	var reqErr gocql.RequestError
	if errors.As(err, &reqErr) {
		switch reqErr.Code() {
		case gocql.ErrCodeInvalid, gocql.ErrCodeSyntax:
			if reqErr.Code() == gocql.ErrCodeInvalid && schemaNotLive(reqErr.Message()) {
				return fmt.Errorf("the store does not know the table or a column yet (another instance created it a moment ago, or it was dropped): %w", err)
			}
			return pipeline.Permanent(err)
		}
	}
	return err
}

// schemaNotLive reports whether an invalid-request message says that the
// coordinator does not know the keyspace, table or a column written. When
// instances of a mapping start together, one creates the table and the
// others find its columns in system_schema a moment (up to a second, seen
// on a loaded node) before the coordinator accepts writes to it; a dropped
// table reads the same. Either way the mapping must pause, not dead-letter
// the events. Messages of Cassandra 4 and 5.
func schemaNotLive(msg string) bool {
	m := strings.ToLower(msg)
	switch {
	case strings.HasPrefix(m, "unconfigured table "), strings.HasPrefix(m, "undefined column name "):
		return true
	case strings.HasPrefix(m, "table "), strings.HasPrefix(m, "keyspace "):
		return strings.HasSuffix(m, " does not exist")
	}
	return false
}

// writeTime is a change's USING TIMESTAMP: the source commit time in µs,
// plus the change's place among its transaction's changes of the same key
// (minus one). Changes of one key in one transaction would otherwise tie,
// and at a tie a delete beats an insert and the larger value beats the
// later one: DELETE k; INSERT k in one transaction, cut by a batch boundary
// or applied again one by one, lost the row.
func writeTime(c *pipeline.Change) int64 {
	return c.CommitTime.UnixMicro() + int64(max(c.KeyOrder, 1)) - 1
}

func (s *Sink) statement(c pipeline.Change) (string, []any, error) {
	ts := writeTime(&c)
	if c.Op == schema.OpDelete {
		args := make([]any, 1, len(s.keys)+1)
		args[0] = ts
		for _, k := range s.keys {
			v, err := cqlValue(k, c.Key[k.Name])
			if err != nil {
				return "", nil, fmt.Errorf("key %q: %w", k.Name, err)
			}
			args = append(args, v)
		}
		return s.deleteStmt, args, nil
	}
	if len(s.names) > 64 {
		return s.insert(c.WrittenColumns(s.cols), c, ts)
	}
	// The written columns, in names' order, as a set of bits: the cached
	// statement's key.
	var set uint64
	n := 0
	for i, name := range s.names {
		if _, ok := c.After[name]; ok && !c.Unchanged[name] {
			set |= 1 << i
			n++
		}
	}
	args := make([]any, 0, n+1)
	for i, name := range s.names {
		if set&(1<<i) == 0 {
			continue
		}
		v, err := cqlValue(s.cols[name], c.After[name])
		if err != nil {
			return "", nil, fmt.Errorf("column %q: %w", name, err)
		}
		args = append(args, v)
	}
	args = append(args, ts)
	stmt, ok := s.inserts[set]
	if !ok {
		names := make([]string, 0, n)
		for i, name := range s.names {
			if set&(1<<i) != 0 {
				names = append(names, name)
			}
		}
		stmt = s.insertStatement(names)
		s.inserts[set] = stmt
	}
	return stmt, args, nil
}

// insert builds the INSERT of names without the cache (a target of more
// than 64 columns).
func (s *Sink) insert(names []string, c pipeline.Change, ts int64) (string, []any, error) {
	args := make([]any, 0, len(names)+1)
	for _, n := range names {
		v, err := cqlValue(s.cols[n], c.After[n])
		if err != nil {
			return "", nil, fmt.Errorf("column %q: %w", n, err)
		}
		args = append(args, v)
	}
	return s.insertStatement(names), append(args, ts), nil
}

func (s *Sink) insertStatement(names []string) string {
	cols := make([]string, len(names))
	marks := make([]string, len(names))
	for i, n := range names {
		cols[i] = schema.QuoteIdent(n)
		marks[i] = "?"
	}
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s) USING TIMESTAMP ?", s.table, strings.Join(cols, ", "), strings.Join(marks, ", "))
}

// cqlValue converts an event's JSON value for a column's CQL type.
func cqlValue(col pipeline.Column, raw json.RawMessage) (any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	raw, err := col.EventValue(raw) // Debezium's temporal numbers as text
	if err != nil {
		return nil, err
	}
	typ := CQLType(col)
	if strings.HasPrefix(typ, "list<") {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, err
		}
		elem := col
		elem.Array, elem.BaseType = false, col.Elem
		out := make([]any, len(items))
		for i, it := range items {
			v, err := cqlValue(elem, it)
			if err != nil {
				return nil, err
			}
			if v == nil {
				return nil, fmt.Errorf("Cassandra lists cannot hold NULL elements")
			}
			out[i] = v
		}
		return out, nil
	}
	var str string
	isString := raw[0] == '"'
	if isString {
		if len(raw) >= 2 && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
			str = string(raw[1 : len(raw)-1]) // nothing escaped
		} else if err := json.Unmarshal(raw, &str); err != nil {
			return nil, err
		}
	}
	num := string(raw)
	if isString {
		num = str
	}
	switch typ {
	case "smallint":
		v, err := strconv.ParseInt(num, 10, 16)
		return int16(v), err
	case "int":
		v, err := strconv.ParseInt(num, 10, 32)
		return int32(v), err
	case "bigint":
		return strconv.ParseInt(num, 10, 64)
	case "float":
		v, err := strconv.ParseFloat(num, 32)
		return float32(v), err
	case "double":
		return strconv.ParseFloat(num, 64)
	case "boolean":
		return strconv.ParseBool(num)
	case "decimal":
		d, ok := new(inf.Dec).SetString(num)
		if !ok {
			return nil, fmt.Errorf("%q is not a decimal Cassandra can hold", num)
		}
		return d, nil
	case "uuid":
		return gocql.ParseUUID(str)
	case "timestamp":
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
			if t, err := time.Parse(layout, str); err == nil {
				return t, nil
			}
		}
		return nil, fmt.Errorf("timestamp %q cannot be stored in Cassandra", str)
	case "date":
		t, err := time.Parse("2006-01-02", str)
		if err != nil {
			return nil, fmt.Errorf("date %q cannot be stored in Cassandra", str)
		}
		return t, nil
	case "blob":
		return base64.StdEncoding.DecodeString(str)
	}
	if isString {
		return str, nil
	}
	return string(raw), nil // json, jsonb and other values as their JSON text
}

// Close ends the session.
func (s *Sink) Close(ctx context.Context) error {
	s.session.Close()
	return nil
}
