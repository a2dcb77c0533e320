// Package verify proves that a mapping's target holds what its monolith
// table holds, and says which keys differ.
//
// The comparison walks the table in primary-key ranges. A PostgreSQL target
// is compared range by range with a count and a sum of row hashes computed
// inside each database (the same canonical row text on both sides); only a
// range whose sums differ is read row by row. A Cassandra target is read by
// key, only the mapped columns, and hashed in Go with the values converted
// exactly as the sink converts them; a scan of its keys by token finds the
// rows the monolith lacks.
//
// Rows that change while verify runs are suspects, not differences: each
// suspect is compared again once the pipeline has caught up past the
// snapshot that read it (Settle), and only what still differs is reported
// (see settleAndCheck and docs/verify.md).
//
// Once a mapping was flipped to the service (Config.ServiceOwns), the
// service's copy is the reference: suspects are read there, Settle waits for
// the reverse flow, and missing and extra are said of the monolith's copy.
package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/connectors/cassandra"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// Kinds of difference.
const (
	Missing   = "missing"   // in the reference, not in its copy
	Extra     = "extra"     // in the copy, not in the reference
	Different = "different" // in both, with different values

	// The reference is the monolith's table until the mapping is flipped
	// to the service, then the service's copy (Config.ServiceOwns).
	ReferenceMonolith = "monolith"
	ReferenceService  = "service"
)

// Config is one verify run.
type Config struct {
	SourceURL string
	StoreURL  string
	Mapping   pipeline.Mapping
	// ServiceOwns says the mapping was flipped (scoop mappings flip): the
	// service's copy is the reference and the monolith's is fed from it by
	// the reverse flow. Suspects are then read in the service (in one
	// snapshot for PostgreSQL), Settle waits for the reverse flow, and
	// missing and extra are said of the monolith's copy.
	ServiceOwns bool
	// Cassandra holds the credentials and TLS settings of a Cassandra store
	// (its URL is StoreURL).
	Cassandra cassandra.SinkConfig
	// ChunkRows is the size of a key range (default 10000).
	ChunkRows int
	// MaxRowsPerSecond limits the rows read per second from each side
	// (0: no limit).
	MaxRowsPerSecond int
	// MaxKeys bounds the suspects kept and compared again (default 10000):
	// beyond it the report is Truncated, its counts cover the keys kept,
	// and it is not Equal.
	MaxKeys int
	// Settle waits until the pipeline has delivered every change committed
	// in the monolith up to lsn (where the snapshot that read the suspects
	// was complete).
	// nil: suspects are compared again at once.
	Settle func(ctx context.Context, lsn string) error
	// Rounds is how often suspects are settled and compared again (default 5).
	Rounds int
	// Progress gets a line every ProgressEvery (default 5 s); nil: none.
	// With ProgressBar (Progress is a terminal) it gets a bar redrawn in
	// place instead.
	Progress      io.Writer
	ProgressEvery time.Duration
	ProgressBar   bool
}

// Diff is one differing key.
type Diff struct {
	Kind string `json:"kind"`
	// Key is the target's key columns and their values as text.
	Key Key `json:"key"`
}

// Key holds the values of the target's key columns, as text, in key order.
type Key struct {
	Names  []string
	Values []string
}

// MarshalJSON writes the key as an object, column -> value.
func (k Key) MarshalJSON() ([]byte, error) { return []byte(k.String()), nil }

// String is the key as a JSON object, in key order.
func (k Key) String() string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, n := range k.Names {
		if i > 0 {
			sb.WriteByte(',')
		}
		b, _ := json.Marshal(n)
		sb.Write(b)
		sb.WriteByte(':')
		b, _ = json.Marshal(k.Values[i])
		sb.Write(b)
	}
	sb.WriteByte('}')
	return sb.String()
}

func (k Key) id() string { return strings.Join(k.Values, "\x00") }

// Report is the outcome of a run.
type Report struct {
	Mapping string `json:"mapping"`
	Source  string `json:"source"`
	Store   string `json:"store"`
	Target  string `json:"target"`
	// Reference is the side the other is compared against: missing and
	// extra are said of the other side's copy.
	Reference string `json:"reference"`
	Rows      int64  `json:"source_rows"`
	Missing   int64  `json:"missing"`
	Extra     int64  `json:"extra"`
	Different int64  `json:"different"`
	Suspects  int64  `json:"suspects"` // keys compared again after settling
	Diffs     []Diff `json:"diffs"`
	// Unsettled lists rows the monolith kept changing through every
	// re-check: never seen equal, never seen still. They are not counted
	// as differences (the pipeline was shown caught up; the row simply
	// moved faster than two reads could agree); run verify again when the
	// writes are quieter.
	Unsettled []Key   `json:"unsettled,omitempty"`
	Truncated bool    `json:"truncated,omitempty"` // more differences than MaxKeys
	Seconds   float64 `json:"seconds"`
	Repaired  int     `json:"repaired,omitempty"`
}

// Equal reports whether no difference remained (a run with more suspects
// than it could compare is never equal).
func (r *Report) Equal() bool { return r.Missing+r.Extra+r.Different == 0 && !r.Truncated }

// ErrUnsupported is returned for a mapping verify cannot compare exactly.
var ErrUnsupported = errors.New("verify cannot compare this mapping")

// store is one kind of target's comparison.
type store interface {
	// scan compares the whole table and reports each differing key.
	scan(ctx context.Context, suspect func(Diff)) error
	// sourceHashes reads the keys' row hashes in the monolith, in one
	// snapshot, and the WAL position that snapshot is complete up to (nil
	// hash: no row).
	sourceHashes(ctx context.Context, keys []Key) ([]*string, string, error)
	// targetHashes reads the keys' row hashes in the target.
	targetHashes(ctx context.Context, keys []Key) ([]*string, error)
	close()
}

// plan is what both kinds of comparison need: the source table and the
// target's columns.
type plan struct {
	cfg     *Config
	table   postgres.TableName
	target  pipeline.Target
	sources map[string]pipeline.Column // source column name -> its monolith column
	keys    []pipeline.Column          // target key columns
	limiter *limiter
	rows    int64 // source rows read by scan
	// estimate is the planner's row count of the monolith table, and sides
	// how many stores' rows the limiter counts: for the progress bar.
	estimate, sides int64
}

func newPlan(ctx context.Context, cfg *Config) (*plan, error) {
	s, t := cfg.Mapping.SourceTable()
	p := &plan{cfg: cfg, table: postgres.TableName{Schema: s, Name: t}, sources: map[string]pipeline.Column{}}
	cols, err := postgres.DescribeColumns(ctx, cfg.SourceURL, p.table)
	if err != nil {
		return nil, fmt.Errorf("read the monolith table %s: %w", p.table, err)
	}
	for _, c := range cols {
		p.sources[c.Source] = c
	}
	if p.target, err = cfg.Mapping.ShapeTarget(cols); err != nil {
		return nil, err
	}
	p.keys = p.target.KeyColumns()
	if err := p.orderKeys(ctx); err != nil {
		return nil, err
	}
	for _, k := range p.keys {
		if _, ok := cfg.Mapping.Columns.Types[k.Source]; ok {
			return nil, fmt.Errorf("%w: key column %q is converted (columns.types); verify compares keys in their own type", ErrUnsupported, k.Source)
		}
	}
	p.limiter = newLimiter(cfg.MaxRowsPerSecond)
	return p, nil
}

// orderKeys puts the key columns in the order of the primary key's index,
// so that key ranges are read along it.
func (p *plan) orderKeys(ctx context.Context) error {
	conn, err := postgres.Connect(ctx, p.cfg.SourceURL)
	if err != nil {
		return fmt.Errorf("connect to the monolith: %w", err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `
		SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = to_regclass($1) AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, schema.QuoteQualified(p.table.Schema, p.table.Name))
	if err != nil {
		return fmt.Errorf("read the primary key of %s: %w", p.table, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read the primary key of %s: %w", p.table, err)
	}
	// The planner's estimate sizes the progress bar (-1: never analysed).
	if err := conn.QueryRow(ctx, `SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)`,
		schema.QuoteQualified(p.table.Schema, p.table.Name)).Scan(&p.estimate); err != nil {
		return fmt.Errorf("read the size of %s: %w", p.table, err)
	}
	pos := map[string]int{}
	for i, n := range names {
		pos[n] = i
	}
	sort.SliceStable(p.keys, func(i, j int) bool { return pos[p.keys[i].Source] < pos[p.keys[j].Source] })
	return nil
}

func (p *plan) key(values []string) Key {
	k := Key{Names: make([]string, len(p.keys)), Values: values}
	for i, c := range p.keys {
		k.Names[i] = c.Name
	}
	return k
}

func (cfg *Config) reference() string {
	if cfg.ServiceOwns {
		return ReferenceService
	}
	return ReferenceMonolith
}

func (cfg *Config) defaults() {
	if cfg.ChunkRows <= 0 {
		cfg.ChunkRows = 10000
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 10000
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 5
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 5 * time.Second
	}
}

// open reads the mapping's shape and connects to both stores.
func open(ctx context.Context, cfg *Config) (*plan, store, error) {
	p, err := newPlan(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	var st store
	switch {
	case strings.HasPrefix(cfg.StoreURL, "postgres://"), strings.HasPrefix(cfg.StoreURL, "postgresql://"):
		p.sides = 1 // the monolith's rows pace the comparison
		st, err = newPGStore(ctx, p)
	case strings.HasPrefix(cfg.StoreURL, "cassandra://"):
		p.sides = 2 // both stores are scanned
		st, err = newCassandraStore(ctx, p)
	default:
		err = fmt.Errorf("%w: store URL scheme of %s is neither postgres:// nor cassandra://", ErrUnsupported, cfg.Mapping.Store)
	}
	return p, st, err
}

// Run compares the mapping's monolith table with its target.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	started := time.Now()
	rep := &Report{Mapping: cfg.Mapping.Name, Source: cfg.Mapping.Source, Store: cfg.Mapping.Store, Target: cfg.Mapping.TargetTable(), Reference: cfg.reference()}
	p, st, err := open(ctx, &cfg)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", cfg.Mapping.Name, err)
	}
	defer st.close()

	var suspects []Key
	var counted atomic.Int64 // read by the progress line
	seen := map[string]bool{}
	stop := p.progress(ctx, func() string { return fmt.Sprintf("%d suspects", counted.Load()) })
	err = st.scan(ctx, func(d Diff) {
		if seen[d.Key.id()] {
			return
		}
		if len(suspects) >= cfg.MaxKeys {
			// Keys beyond MaxKeys are not compared again or listed.
			rep.Truncated = true
			return
		}
		seen[d.Key.id()] = true
		suspects = append(suspects, d.Key)
		counted.Add(1)
	})
	stop()
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", cfg.Mapping.Name, err)
	}
	rep.Rows = p.rows
	rep.Suspects = int64(len(suspects))
	if err := settleAndCheck(ctx, &cfg, st, suspects, rep); err != nil {
		return nil, fmt.Errorf("verify %s: %w", cfg.Mapping.Name, err)
	}
	rep.Seconds = time.Since(started).Seconds()
	return rep, nil
}

// Recheck compares again the keys a report found different (after a
// repair), once the pipeline has caught up.
func Recheck(ctx context.Context, cfg Config, prev *Report) (*Report, error) {
	cfg.defaults()
	started := time.Now()
	rep := &Report{Mapping: prev.Mapping, Source: prev.Source, Store: prev.Store, Target: prev.Target, Reference: cfg.reference(), Rows: prev.Rows, Truncated: prev.Truncated}
	_, st, err := open(ctx, &cfg)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", cfg.Mapping.Name, err)
	}
	defer st.close()
	keys := make([]Key, len(prev.Diffs))
	for i, d := range prev.Diffs {
		keys[i] = d.Key
	}
	rep.Suspects = int64(len(keys))
	if err := settleAndCheck(ctx, &cfg, st, keys, rep); err != nil {
		return nil, fmt.Errorf("verify %s: %w", cfg.Mapping.Name, err)
	}
	rep.Seconds = time.Since(started).Seconds()
	return rep, nil
}

// settleAndCheck compares suspects again, in rounds. Each round reads the
// monolith's rows of the suspects in one snapshot and the WAL position it is
// complete up to, waits until the pipeline delivered everything committed up
// to there (Settle), and reads the target's rows: a row that was only in
// flight agrees now. A row that still disagrees is read in both stores
// again, a few times: unchanged in the monolith, it is a difference; equal,
// it agrees; still changing, it goes to the next round, and is reported only
// if it is still changing after cfg.Rounds rounds.
func settleAndCheck(ctx context.Context, cfg *Config, st store, suspects []Key, rep *Report) error {
	diffs := []Diff{}
	for round := 0; round < cfg.Rounds && len(suspects) > 0; round++ {
		var next []Key
		for start := 0; start < len(suspects); start += 500 {
			part := suspects[start:min(start+500, len(suspects))]
			confirmed, flux, err := checkRound(ctx, cfg, st, part)
			if err != nil {
				return err
			}
			diffs = append(diffs, confirmed...)
			next = append(next, flux...)
		}
		suspects = next
		if cfg.Settle == nil {
			break
		}
	}
	// Still changing after every round: reported as unsettled, not as
	// differences (a difference must stay different while the row is still).
	rep.Unsettled = suspects
	rep.Diffs = diffs
	for _, d := range diffs {
		switch d.Kind {
		case Missing:
			rep.Missing++
		case Extra:
			rep.Extra++
		default:
			rep.Different++
		}
	}
	return nil
}

// checkRound is one round of settleAndCheck: the keys found different, and
// those whose monolith row changed during the round.
func checkRound(ctx context.Context, cfg *Config, st store, keys []Key) (confirmed []Diff, flux []Key, err error) {
	before, lsn, err := st.sourceHashes(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Settle != nil {
		if err := cfg.Settle(ctx, lsn); err != nil {
			return nil, nil, fmt.Errorf("wait for the pipeline: %w", err)
		}
	}
	target, err := st.targetHashes(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	var idx []int
	var mismatch []Key
	for i, k := range keys {
		if !sameHash(before[i], target[i]) {
			idx = append(idx, i)
			mismatch = append(mismatch, k)
		}
	}
	if len(mismatch) == 0 {
		return nil, nil, nil
	}
	// A row that changed since the snapshot is compared a few more times,
	// both stores read back to back: the target trails the monolith by the
	// pipeline's latency, so a row that is not changing faster than that
	// is soon seen equal.
	for attempt := 0; attempt < fluxPolls && len(mismatch) > 0; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(fluxPause):
			}
		}
		now, _, err := st.sourceHashes(ctx, mismatch)
		if err != nil {
			return nil, nil, err
		}
		target, err := st.targetHashes(ctx, mismatch)
		if err != nil {
			return nil, nil, err
		}
		var still []Key
		var stillIdx []int
		for j, k := range mismatch {
			i := idx[j]
			switch {
			case sameHash(now[j], target[j]):
				// The target has caught up.
			case sameHash(now[j], before[i]) || cfg.Settle == nil:
				// Unchanged since the snapshot the pipeline has delivered.
				if d, ok := diffOf(k, now[j], target[j]); ok {
					confirmed = append(confirmed, d)
				}
			default:
				still = append(still, k)
				stillIdx = append(stillIdx, i)
			}
		}
		mismatch, idx = still, stillIdx
		if cfg.Settle == nil {
			break
		}
	}
	return confirmed, mismatch, nil
}

// How often and how far apart a changing row is compared again within a
// round.
const (
	fluxPolls = 10
	fluxPause = 100 * time.Millisecond
)

func sameHash(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func diffOf(k Key, src, dst *string) (Diff, bool) {
	switch {
	case sameHash(src, dst):
		return Diff{}, false
	case dst == nil:
		return Diff{Kind: Missing, Key: k}, true
	case src == nil:
		return Diff{Kind: Extra, Key: k}, true
	}
	return Diff{Kind: Different, Key: k}, true
}

// progress prints a line every ProgressEvery until stop is called.
func (p *plan) progress(ctx context.Context, extra func() string) (stop func()) {
	if p.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	started := time.Now()
	every := p.cfg.ProgressEvery
	if p.cfg.ProgressBar {
		every = 250 * time.Millisecond
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if p.cfg.ProgressBar {
					fmt.Fprint(p.cfg.Progress, "\r\033[K") // clear the bar
				}
				return
			case <-ctx.Done():
				return
			case <-t.C:
				n := p.limiter.total()
				rate := float64(n) / time.Since(started).Seconds()
				if !p.cfg.ProgressBar {
					fmt.Fprintf(p.cfg.Progress, "verify %s: %d rows compared (%.0f rows/s), %s\n", p.cfg.Mapping.Name, n, rate, extra())
					continue
				}
				fmt.Fprintf(p.cfg.Progress, "\r\033[Kverify %s %s %d rows (%.0f rows/s), %s", p.cfg.Mapping.Name, bar(n, p.estimate*p.sides), n, rate, extra())
			}
		}
	}()
	return func() { close(done); <-finished }
}

// bar draws [#####     ] 50% for n of about total (the planner's estimate).
func bar(n, total int64) string {
	const width = 20
	if total <= 0 {
		return ""
	}
	f := min(float64(n)/float64(total), 1)
	full := int(f * width)
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("#", full), strings.Repeat(" ", width-full), f*100)
}

// RepairKeys turns differing keys into the monolith's key values (source
// column name -> text) for postgres.Republish.
func RepairKeys(m *pipeline.Mapping, diffs []Diff) []map[string]string {
	source := map[string]string{}
	for from, to := range m.Columns.Rename {
		source[to] = from
	}
	out := make([]map[string]string, 0, len(diffs))
	for _, d := range diffs {
		k := make(map[string]string, len(d.Key.Names))
		for i, n := range d.Key.Names {
			if s, ok := source[n]; ok {
				n = s
			}
			k[n] = d.Key.Values[i]
		}
		out = append(out, k)
	}
	return out
}

// ServiceKeys turns differing keys into the service table's key values
// (column name -> text) for postgres.Republish of the service's rows, once
// the mapping was flipped (the keys are already the service's columns).
func ServiceKeys(diffs []Diff) []map[string]string {
	out := make([]map[string]string, 0, len(diffs))
	for _, d := range diffs {
		k := make(map[string]string, len(d.Key.Names))
		for i, n := range d.Key.Names {
			k[n] = d.Key.Values[i]
		}
		out = append(out, k)
	}
	return out
}
