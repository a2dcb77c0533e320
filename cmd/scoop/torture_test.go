package main

// TestTorture is a randomized differential test: a seeded generator writes
// ordinary SQL to several mapped monolith tables while scoop is SIGKILLed and
// restarted at random moments and Kafka is restarted once; at the end every
// store is compared with the monolith, column by column.
//
//	TORTURE_SEED=N       replays the operation sequence of a run (printed at start)
//	TORTURE_DURATION=D   workload time (default 60s; `make torture`: 10m)
//
// The checker does not use scoop's code to compute expected values: it reads
// the monolith, the service database and Cassandra directly and applies the
// shaping of the mapping file written here (target names, renames, excluded
// columns), normalizing types (numeric as exact rationals, timestamps to µs
// UTC, or ms for Cassandra, jsonb canonical).

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"gopkg.in/inf.v0"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// tcol is a non-key column of a torture table.
type tcol struct {
	name, sqlType string
	kind          string // text, big, numeric, ts, jsonb, bool, int
}

// keyset is an ordered set of keys: random picks are deterministic.
type keyset struct {
	keys []int64
	idx  map[int64]int
}

func newKeyset() *keyset { return &keyset{idx: map[int64]int{}} }

func (s *keyset) add(k int64) {
	if _, ok := s.idx[k]; !ok {
		s.idx[k] = len(s.keys)
		s.keys = append(s.keys, k)
	}
}

func (s *keyset) del(k int64) {
	i, ok := s.idx[k]
	if !ok {
		return
	}
	last := s.keys[len(s.keys)-1]
	s.keys[i] = last
	s.idx[last] = i
	s.keys = s.keys[:len(s.keys)-1]
	delete(s.idx, k)
}

func (s *keyset) has(k int64) bool { _, ok := s.idx[k]; return ok }

func (s *keyset) clone() *keyset {
	c := &keyset{keys: append([]int64(nil), s.keys...), idx: make(map[int64]int, len(s.idx))}
	for k, v := range s.idx {
		c.idx[k] = v
	}
	return c
}

// ttable is the generator's model of one monolith table: its live keys, not
// its values (the checker reads values from the monolith itself).
type ttable struct {
	name    string
	keyType string // integer or bigint
	full    bool   // REPLICA IDENTITY FULL
	cols    []tcol
	live    *keyset
	big     *keyset // keys whose big column holds a large value (approximate)
	deleted []int64 // recently deleted keys, for re-inserts in later transactions
	next    int64
	added   int
	hist    map[int64][]string // operations that touched each key in committed transactions
}

func (tb *ttable) ident() string { return schema.QuoteIdent(tb.name) }

type tmodelState struct {
	live, big *keyset
	deleted   []int64
	next      int64
}

func (tb *ttable) save() tmodelState {
	return tmodelState{tb.live.clone(), tb.big.clone(), append([]int64(nil), tb.deleted...), tb.next}
}

func (tb *ttable) restore(s tmodelState) {
	tb.live, tb.big, tb.deleted, tb.next = s.live, s.big, s.deleted, s.next
}

// top is one step of a transaction: SQL, or a COPY.
type top struct {
	sql      string
	args     []any
	copyRows [][]any
	table    *ttable
	cols     []string
}

// txPlan is one generated transaction.
type txPlan struct {
	kind     string
	ops      []top
	rollback bool
	touched  []touch // keys touched (committed part only)
}

type touch struct {
	tb  *ttable
	key int64
	op  string
}

// tgen generates transactions from a seed; it never looks at the database.
type tgen struct {
	r      *rand.Rand
	tables []*ttable
	short  bool
	plan   *txPlan
	run    int             // scoop processes started so far, noted in key histories
	only   map[string]bool // TORTURE_KINDS: the operation kinds allowed (all when empty)
}

func (g *tgen) allowed(kind string) bool { return len(g.only) == 0 || g.only[kind] }

func (g *tgen) pick(s *keyset) (int64, bool) {
	if len(s.keys) == 0 {
		return 0, false
	}
	return s.keys[g.r.Intn(len(s.keys))], true
}

func (g *tgen) sample(tb *ttable, n int) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for i := 0; i < n*2 && len(out) < n; i++ {
		k, ok := g.pick(tb.live)
		if ok && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

func (g *tgen) touch(tb *ttable, k int64, op string) {
	g.plan.touched = append(g.plan.touched, touch{tb, k, fmt.Sprintf("%s@run%d", op, g.run)})
}

const hexChars = "0123456789abcdef"

func (g *tgen) text() any {
	switch g.r.Intn(10) {
	case 0:
		return nil
	case 1:
		return ""
	case 2:
		return "héllo ✓ 𝄞 \"quoted\" back\\slash\ttab\nnewline 'apos'"
	case 3:
		return strings.Repeat("ab", g.r.Intn(200))
	}
	b := make([]byte, 4+g.r.Intn(20))
	for i := range b {
		b[i] = hexChars[g.r.Intn(16)]
	}
	return "t-" + string(b)
}

// bigText is random bytes as base64, 8 to 12 KB: too large to stay in line
// and not compressible, so PostgreSQL TOASTs it out of line uncompressed.
func (g *tgen) bigText() string {
	b := make([]byte, 6000+g.r.Intn(3000))
	g.r.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func (g *tgen) numeric(scale int) any {
	if g.r.Intn(10) == 0 {
		return nil
	}
	digits := 1 + g.r.Intn(11)
	if scale < 0 { // unconstrained
		scale = g.r.Intn(7)
		if g.r.Intn(8) == 0 {
			digits = 20 + g.r.Intn(10)
		}
	}
	n := new(big.Int)
	for i := 0; i < digits; i++ {
		n.Mul(n, big.NewInt(10))
		n.Add(n, big.NewInt(int64(g.r.Intn(10))))
	}
	if g.r.Intn(3) == 0 {
		n.Neg(n)
	}
	return pgtype.Numeric{Int: n, Exp: int32(-scale), Valid: true}
}

func (g *tgen) ts() any {
	if g.r.Intn(10) == 0 {
		return nil
	}
	base := time.Date(1995, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	span := time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro() - base
	return time.UnixMicro(base + g.r.Int63n(span)).UTC()
}

func (g *tgen) jsonb() any {
	switch g.r.Intn(8) {
	case 0:
		return nil
	case 1:
		return []any{g.r.Intn(100), "x", true, nil, map[string]any{"n": 1.5}}
	}
	return map[string]any{
		"z": g.r.Intn(1000), "a": []any{"b", g.r.Float64() < 0.5, nil},
		"nested": map[string]any{"k": "v ✓", "n": g.r.Intn(50) - 25},
		"s":      fmt.Sprintf("s%d", g.r.Intn(1e6)),
	}
}

func (g *tgen) value(tb *ttable, c tcol, k int64) any {
	switch c.kind {
	case "text":
		return g.text()
	case "big":
		if g.r.Intn(8) == 0 {
			tb.big.add(k)
			return g.bigText()
		}
		tb.big.del(k)
		return g.text()
	case "numeric":
		if strings.HasPrefix(c.sqlType, "numeric(") {
			return g.numeric(2)
		}
		return g.numeric(-1)
	case "ts":
		return g.ts()
	case "jsonb":
		return g.jsonb()
	case "bool":
		if g.r.Intn(10) == 0 {
			return nil
		}
		return g.r.Intn(2) == 0
	case "int":
		if g.r.Intn(10) == 0 {
			return nil
		}
		return int32(g.r.Intn(1 << 30))
	}
	panic("unknown kind " + c.kind)
}

func (g *tgen) row(tb *ttable, k int64) []any {
	row := []any{k}
	for _, c := range tb.cols {
		row = append(row, g.value(tb, c, k))
	}
	return row
}

func (tb *ttable) colNames() []string {
	names := []string{"id"}
	for _, c := range tb.cols {
		names = append(names, c.name)
	}
	return names
}

func (tb *ttable) colList() string {
	var q []string
	for _, n := range tb.colNames() {
		q = append(q, schema.QuoteIdent(n))
	}
	return strings.Join(q, ", ")
}

// insertSQL is one multi-row INSERT of rows.
func insertSQL(tb *ttable, rows [][]any) top {
	var vals []string
	var args []any
	for _, r := range rows {
		var ph []string
		for _, v := range r {
			args = append(args, v)
			ph = append(ph, "$"+strconv.Itoa(len(args)))
		}
		vals = append(vals, "("+strings.Join(ph, ", ")+")")
	}
	return top{sql: fmt.Sprintf("INSERT INTO %s (%s) VALUES %s", tb.ident(), tb.colList(), strings.Join(vals, ", ")), args: args}
}

func (g *tgen) freshRows(tb *ttable, n int, op string) [][]any {
	var rows [][]any
	for i := 0; i < n; i++ {
		k := tb.next
		tb.next++
		rows = append(rows, g.row(tb, k))
		tb.live.add(k)
		g.touch(tb, k, op)
	}
	return rows
}

func (g *tgen) opInsert(tb *ttable) top {
	return insertSQL(tb, g.freshRows(tb, 1+g.r.Intn(20), "insert"))
}

func (g *tgen) opCopy(tb *ttable, n int, op string) top {
	return top{copyRows: g.freshRows(tb, n, op), table: tb, cols: tb.colNames()}
}

// opBulkSQL inserts n rows computed by the server (INSERT ... SELECT).
func (g *tgen) opBulkSQL(tb *ttable, n int) top {
	from := tb.next
	var exprs []string
	for _, c := range tb.cols {
		switch c.kind {
		case "text", "big":
			exprs = append(exprs, "'bulk-' || g")
		case "numeric":
			exprs = append(exprs, "g * 1.25")
		case "ts":
			exprs = append(exprs, "timestamptz '2021-03-04 05:06:07.123456+00' + g * interval '1.000001 second'")
		case "jsonb":
			exprs = append(exprs, "jsonb_build_object('g', g, 'even', g % 2 = 0)")
		case "bool":
			exprs = append(exprs, "g % 3 = 0")
		case "int":
			exprs = append(exprs, "(g % 1000)::int")
		}
	}
	for k := from; k < from+int64(n); k++ {
		tb.live.add(k)
		tb.big.del(k)
		g.touch(tb, k, "bulk")
	}
	tb.next += int64(n)
	return top{sql: fmt.Sprintf("INSERT INTO %s (%s) SELECT g, %s FROM generate_series(%d::bigint, %d) g", tb.ident(), tb.colList(), strings.Join(exprs, ", "), from, from+int64(n)-1)}
}

// opUpdate changes non-key columns, often leaving the big (TOASTed) column alone.
func (g *tgen) opUpdate(tb *ttable) []top {
	var keys []int64
	if len(tb.big.keys) > 0 && g.r.Intn(2) == 0 {
		k, _ := g.pick(tb.big)
		if tb.live.has(k) {
			keys = []int64{k}
		}
	}
	if keys == nil {
		keys = g.sample(tb, 1+g.r.Intn(10))
	}
	if len(keys) == 0 {
		return nil
	}
	if g.r.Intn(3) == 0 { // server-side expressions over several rows
		var sets []string
		for _, c := range tb.cols {
			if c.kind == "big" || g.r.Intn(2) == 0 {
				continue
			}
			switch c.kind {
			case "text":
				sets = append(sets, fmt.Sprintf("%[1]s = coalesce(%[1]s, '') || '+'", schema.QuoteIdent(c.name)))
			case "numeric":
				sets = append(sets, fmt.Sprintf("%[1]s = %[1]s + 1.01", schema.QuoteIdent(c.name)))
			case "ts":
				sets = append(sets, fmt.Sprintf("%[1]s = %[1]s + interval '1 day 0.000003 second'", schema.QuoteIdent(c.name)))
			case "jsonb":
				sets = append(sets, fmt.Sprintf(`%[1]s = coalesce(%[1]s, '{}') || '{"upd": true}'`, schema.QuoteIdent(c.name)))
			case "bool":
				sets = append(sets, fmt.Sprintf("%[1]s = NOT coalesce(%[1]s, false)", schema.QuoteIdent(c.name)))
			case "int":
				sets = append(sets, fmt.Sprintf("%[1]s = coalesce(%[1]s, 0) + 1", schema.QuoteIdent(c.name)))
			}
		}
		if len(sets) == 0 {
			sets = append(sets, fmt.Sprintf("%[1]s = %[1]s", schema.QuoteIdent(tb.cols[0].name)))
		}
		for _, k := range keys {
			g.touch(tb, k, "update-expr")
		}
		return []top{{sql: fmt.Sprintf("UPDATE %s SET %s WHERE id = ANY($1)", tb.ident(), strings.Join(sets, ", ")), args: []any{keys}}}
	}
	var ops []top
	for _, k := range keys {
		var sets []string
		var args []any
		for _, c := range tb.cols {
			if g.r.Intn(2) == 0 || (c.kind == "big" && g.r.Intn(3) != 0) {
				continue
			}
			args = append(args, g.value(tb, c, k))
			sets = append(sets, fmt.Sprintf("%s = $%d", schema.QuoteIdent(c.name), len(args)))
		}
		if len(sets) == 0 {
			c := tb.cols[0]
			args = append(args, g.value(tb, c, k))
			sets = append(sets, fmt.Sprintf("%s = $1", schema.QuoteIdent(c.name)))
		}
		args = append(args, k)
		g.touch(tb, k, "update")
		ops = append(ops, top{sql: fmt.Sprintf("UPDATE %s SET %s WHERE id = $%d", tb.ident(), strings.Join(sets, ", "), len(args)), args: args})
	}
	return ops
}

// opKeyUpdate changes primary keys: a range shifted with id = id + O past
// every key ever used (no collisions), or one key moved with a value change.
func (g *tgen) opKeyUpdate(tb *ttable) top {
	a, ok := g.pick(tb.live)
	if !ok {
		return g.opInsert(tb)
	}
	if g.r.Intn(2) == 0 {
		span := int64(g.r.Intn(30))
		o := tb.next - a
		// Collect first: with o <= span a moved key lands inside the range,
		// and the database moves every row once.
		var moved []int64
		for k := a; k <= a+span; k++ {
			if tb.live.has(k) {
				moved = append(moved, k)
			}
		}
		for _, k := range moved {
			g.moveKey(tb, k, k+o)
		}
		tb.next = a + span + o + 1
		return top{sql: fmt.Sprintf("UPDATE %s SET id = id + %d WHERE id BETWEEN %d AND %d", tb.ident(), o, a, a+span)}
	}
	n := tb.next
	tb.next++
	g.moveKey(tb, a, n)
	c := tb.cols[g.r.Intn(len(tb.cols))]
	if c.kind == "big" {
		c = tb.cols[0]
	}
	return top{sql: fmt.Sprintf("UPDATE %s SET id = $1, %s = $2 WHERE id = $3", tb.ident(), schema.QuoteIdent(c.name)), args: []any{n, g.value(tb, c, n), a}}
}

func (g *tgen) moveKey(tb *ttable, from, to int64) {
	tb.live.del(from)
	tb.live.add(to)
	if tb.big.has(from) {
		tb.big.del(from)
		tb.big.add(to)
	}
	g.noteDeleted(tb, from)
	g.touch(tb, from, fmt.Sprintf("key-moved-to-%d", to))
	g.touch(tb, to, fmt.Sprintf("key-moved-from-%d", from))
}

func (g *tgen) noteDeleted(tb *ttable, k int64) {
	tb.deleted = append(tb.deleted, k)
	if len(tb.deleted) > 200 {
		tb.deleted = tb.deleted[len(tb.deleted)-200:]
	}
}

func (g *tgen) opDelete(tb *ttable) top {
	if g.r.Intn(4) == 0 {
		a, ok := g.pick(tb.live)
		if ok {
			span := int64(g.r.Intn(40))
			for k := a; k <= a+span; k++ {
				if tb.live.has(k) {
					tb.live.del(k)
					tb.big.del(k)
					g.noteDeleted(tb, k)
					g.touch(tb, k, "delete-range")
				}
			}
			return top{sql: fmt.Sprintf("DELETE FROM %s WHERE id BETWEEN %d AND %d", tb.ident(), a, a+span)}
		}
	}
	keys := g.sample(tb, 1+g.r.Intn(10))
	for _, k := range keys {
		tb.live.del(k)
		tb.big.del(k)
		g.noteDeleted(tb, k)
		g.touch(tb, k, "delete")
	}
	return top{sql: fmt.Sprintf("DELETE FROM %s WHERE id = ANY($1)", tb.ident()), args: []any{keys}}
}

// opDeleteReinsert deletes keys and inserts them again in the same transaction.
func (g *tgen) opDeleteReinsert(tb *ttable) []top {
	keys := g.sample(tb, 1+g.r.Intn(3))
	if len(keys) == 0 {
		return []top{g.opInsert(tb)}
	}
	ops := []top{{sql: fmt.Sprintf("DELETE FROM %s WHERE id = ANY($1)", tb.ident()), args: []any{keys}}}
	var rows [][]any
	for _, k := range keys {
		rows = append(rows, g.row(tb, k))
		g.touch(tb, k, "delete+reinsert")
	}
	ops = append(ops, insertSQL(tb, rows))
	if g.r.Intn(2) == 0 {
		ops = append(ops, g.opUpdate(tb)...)
	}
	return ops
}

// opResurrect inserts again keys deleted by earlier transactions.
func (g *tgen) opResurrect(tb *ttable) top {
	var rows [][]any
	for i := 0; i < 1+g.r.Intn(5) && len(tb.deleted) > 0; i++ {
		j := g.r.Intn(len(tb.deleted))
		k := tb.deleted[j]
		tb.deleted = append(tb.deleted[:j], tb.deleted[j+1:]...)
		if tb.live.has(k) {
			continue
		}
		rows = append(rows, g.row(tb, k))
		tb.live.add(k)
		g.touch(tb, k, "reinsert-later")
	}
	if len(rows) == 0 {
		return g.opInsert(tb)
	}
	return insertSQL(tb, rows)
}

// opTruncateReload truncates and reloads the table: some keys it held come back
// with new values, some keys are new.
func (g *tgen) opTruncateReload(tb *ttable) []top {
	old := g.sample(tb, 100)
	for _, k := range tb.live.keys {
		g.touch(tb, k, "truncated")
	}
	tb.live, tb.big = newKeyset(), newKeyset()
	ops := []top{{sql: fmt.Sprintf("TRUNCATE %s", tb.ident())}}
	var rows [][]any
	for _, k := range old {
		rows = append(rows, g.row(tb, k))
		tb.live.add(k)
		g.touch(tb, k, "truncate-reload")
	}
	if len(rows) > 0 {
		ops = append(ops, top{copyRows: rows, table: tb, cols: tb.colNames()})
	}
	ops = append(ops, g.opCopy(tb, 50+g.r.Intn(200), "truncate-reload"))
	return ops
}

// opAddColumn adds a nullable column and writes values into it.
func (g *tgen) opAddColumn(tb *ttable) []top {
	kinds := []tcol{{sqlType: "text", kind: "text"}, {sqlType: "integer", kind: "int"}, {sqlType: "numeric", kind: "numeric"},
		{sqlType: "boolean", kind: "bool"}, {sqlType: "jsonb", kind: "jsonb"}, {sqlType: "timestamptz", kind: "ts"}}
	c := kinds[g.r.Intn(len(kinds))]
	tb.added++
	c.name = fmt.Sprintf("added_%d", tb.added)
	tb.cols = append(tb.cols, c)
	ops := []top{{sql: fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", tb.ident(), schema.QuoteIdent(c.name), c.sqlType)}}
	for _, k := range g.sample(tb, 20) {
		v := g.value(tb, c, k)
		for v == nil {
			v = g.value(tb, c, k)
		}
		g.touch(tb, k, "set-added-column")
		ops = append(ops, top{sql: fmt.Sprintf("UPDATE %s SET %s = $1 WHERE id = $2", tb.ident(), schema.QuoteIdent(c.name)), args: []any{v, k}})
	}
	ops = append(ops, g.opInsert(tb))
	return ops
}

// simple is one random ordinary operation on a random table.
func (g *tgen) simple() []top {
	tb := g.tables[g.r.Intn(len(g.tables))]
	if len(tb.live.keys) > 30000 && g.allowed("delete") {
		return []top{g.opDelete(tb)}
	}
	for {
		kind := ""
		switch x := g.r.Intn(100); {
		case x < 25:
			kind = "insert"
		case x < 55:
			kind = "update"
		case x < 70:
			kind = "delete"
		case x < 80:
			kind = "copy"
		case x < 88:
			kind = "key-update"
		case x < 95:
			kind = "delete+reinsert"
		default:
			kind = "reinsert-later"
		}
		if !g.allowed(kind) {
			if !g.anySimpleAllowed() {
				return []top{g.opInsert(tb)}
			}
			continue
		}
		return g.simpleOp(tb, kind)
	}
}

func (g *tgen) anySimpleAllowed() bool {
	for _, k := range tortureKinds[:7] {
		if g.allowed(k) {
			return true
		}
	}
	return false
}

func (g *tgen) simpleOp(tb *ttable, kind string) []top {
	switch kind {
	case "insert":
		return []top{g.opInsert(tb)}
	case "update":
		return g.opUpdate(tb)
	case "delete":
		return []top{g.opDelete(tb)}
	case "copy":
		return []top{g.opCopy(tb, 20+g.r.Intn(300), "copy")}
	case "key-update":
		return []top{g.opKeyUpdate(tb)}
	case "delete+reinsert":
		return g.opDeleteReinsert(tb)
	default:
		return []top{g.opResurrect(tb)}
	}
}

var tortureKinds = []string{"insert", "copy", "update", "key-update", "delete", "delete+reinsert", "reinsert-later",
	"truncate+reload", "savepoint", "rollback", "bulk", "add-column", "mixed"}

// next plans the next transaction; forced names its kind (every kind appears
// early in a run), or "" for a random one.
func (g *tgen) next(forced string) *txPlan {
	g.plan = &txPlan{}
	kind := forced
	for kind == "" || !g.allowed(kind) {
		switch x := g.r.Intn(1000); {
		case x < 6:
			kind = "truncate+reload"
		case x < 10:
			kind = "bulk"
		case x < 14:
			kind = "add-column"
		case x < 80:
			kind = "savepoint"
		case x < 120:
			kind = "rollback"
		case x < 450:
			kind = "mixed"
		default:
			kind = tortureKinds[g.r.Intn(7)]
		}
	}
	g.plan.kind = kind
	tb := g.tables[g.r.Intn(len(g.tables))]
	switch kind {
	case "insert", "copy", "update", "key-update", "delete", "delete+reinsert", "reinsert-later":
		g.plan.ops = g.simpleOp(tb, kind)
	case "truncate+reload":
		g.plan.ops = g.opTruncateReload(tb)
	case "bulk":
		n := 3000 + g.r.Intn(3000)
		if g.short {
			n = 2000 + g.r.Intn(1000)
		}
		if g.r.Intn(2) == 0 {
			g.plan.ops = []top{g.opCopy(tb, n, "bulk-copy")}
		} else {
			g.plan.ops = []top{g.opBulkSQL(tb, n)}
		}
	case "add-column":
		if tb.added >= 3 {
			g.plan.kind = "mixed"
			g.plan.ops = g.simple()
			break
		}
		g.plan.ops = g.opAddColumn(tb)
	case "mixed":
		for i := 0; i < 2+g.r.Intn(4); i++ {
			g.plan.ops = append(g.plan.ops, g.simple()...)
		}
	case "savepoint":
		g.plan.ops = g.simple()
		saved := g.saveAll()
		mark := len(g.plan.touched)
		g.plan.ops = append(g.plan.ops, top{sql: "SAVEPOINT torture_sp"})
		for i := 0; i < 1+g.r.Intn(3); i++ {
			g.plan.ops = append(g.plan.ops, g.simple()...)
		}
		if g.r.Intn(4) == 0 {
			g.plan.ops = append(g.plan.ops, top{sql: "RELEASE SAVEPOINT torture_sp"})
		} else {
			g.plan.ops = append(g.plan.ops, top{sql: "ROLLBACK TO SAVEPOINT torture_sp"})
			g.restoreAll(saved)
			g.plan.touched = g.plan.touched[:mark]
		}
		g.plan.ops = append(g.plan.ops, g.simple()...)
	case "rollback":
		saved := g.saveAll()
		for i := 0; i < 1+g.r.Intn(3); i++ {
			g.plan.ops = append(g.plan.ops, g.simple()...)
		}
		g.plan.rollback = true
		g.restoreAll(saved)
		g.plan.touched = nil
	}
	return g.plan
}

func (g *tgen) saveAll() []tmodelState {
	var s []tmodelState
	for _, tb := range g.tables {
		s = append(s, tb.save())
	}
	return s
}

func (g *tgen) restoreAll(s []tmodelState) {
	for i, tb := range g.tables {
		tb.restore(s[i])
	}
}

// tortureStats are the run's figures.
type tortureStats struct {
	ops                             map[string]int
	txs, rolledBack, rows           int
	kills, selfExits, kafkaRestarts int
	compared                        map[string]int
}

// execPlan runs one planned transaction on the monolith.
func execPlan(ctx context.Context, c *pgx.Conn, p *txPlan, st *tortureStats) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	rows := 0
	for _, op := range p.ops {
		if op.copyRows != nil {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{op.table.name}, op.cols, pgx.CopyFromRows(op.copyRows))
			if err != nil {
				return fmt.Errorf("copy into %s: %w", op.table.name, err)
			}
			rows += int(n)
			continue
		}
		tag, err := tx.Exec(ctx, op.sql, op.args...)
		if err != nil {
			return fmt.Errorf("%.200s: %w", op.sql, err)
		}
		rows += int(tag.RowsAffected())
	}
	st.ops[p.kind]++
	if p.rollback {
		st.rolledBack++
		return tx.Rollback(ctx)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	st.txs++
	st.rows += rows
	for _, tc := range p.touched {
		h := append(tc.tb.hist[tc.key], tc.op)
		if len(h) > 6 {
			h = h[len(h)-6:]
		}
		tc.tb.hist[tc.key] = h
	}
	return nil
}

// scoopSupervisor keeps one scoop process running, kills it on demand and
// restarts it when it exits by itself (as a service manager would).
type scoopSupervisor struct {
	t    *testing.T
	env  []string
	cmd  *exec.Cmd
	done chan struct{}
	logs []string
}

func (s *scoopSupervisor) start() {
	f, err := os.CreateTemp(s.t.TempDir(), "scoop-*.log")
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(binary, "run")
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	s.cmd, s.done = cmd, done
	s.logs = append(s.logs, f.Name())
}

func (s *scoopSupervisor) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *scoopSupervisor) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

func (s *scoopSupervisor) lastLog() string {
	b, _ := os.ReadFile(s.logs[len(s.logs)-1])
	return string(b)
}

func slicesContains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func tortureDuration(t *testing.T) time.Duration {
	if v := os.Getenv("TORTURE_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TORTURE_DURATION=%q: %v (fix: a Go duration such as 90s or 10m)", v, err)
		}
		return d
	}
	return 60 * time.Second
}

func TestTorture(t *testing.T) {
	seed := time.Now().UnixNano() % 1_000_000_000
	if v := os.Getenv("TORTURE_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("TORTURE_SEED=%q: %v", v, err)
		}
	}
	dur := tortureDuration(t)
	head, _ := exec.Command("git", "-C", testenv.Root(), "rev-parse", "--short", "HEAD").Output()
	dirty, _ := exec.Command("git", "-C", testenv.Root(), "status", "--porcelain", "--untracked-files=no").Output()
	fmt.Printf("torture: seed %d (TORTURE_SEED=%d reproduces the operation sequence), duration %s, scoop at %s with %d changed files\n",
		seed, seed, dur, strings.TrimSpace(string(head)), strings.Count(string(dirty), "\n"))
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewSource(seed))
	ctx := context.Background()
	mono := testenv.Conn(t, "monolith")

	// The tables: one mapped to both stores (REPLICA IDENTITY DEFAULT, renamed
	// and excluded columns), one FULL to PostgreSQL, one FULL to Cassandra.
	run := testenv.Name("tt")
	both := &ttable{name: run + "_acct", keyType: "bigint", cols: []tcol{
		{"name", "text", "text"}, {"balance", "numeric(14,2)", "numeric"}, {"opened", "timestamptz", "ts"},
		{"doc", "jsonb", "jsonb"}, {"active", "boolean", "bool"}, {"big", "text", "big"}, {"secret", "text", "text"}}}
	ledger := &ttable{name: run + "_ledger", keyType: "integer", full: true, cols: []tcol{
		{"amount", "numeric", "numeric"}, {"note", "text", "text"}, {"at", "timestamptz", "ts"},
		{"flag", "boolean", "bool"}, {"meta", "jsonb", "jsonb"}, {"big", "text", "big"}}}
	events := &ttable{name: run + "_events", keyType: "bigint", full: true, cols: []tcol{
		{"kind", "text", "text"}, {"payload", "jsonb", "jsonb"}, {"at", "timestamptz", "ts"},
		{"qty", "numeric", "numeric"}, {"big", "text", "big"}, {"ok", "boolean", "bool"}}}
	tables := []*ttable{both, ledger, events}
	g := &tgen{r: r, tables: tables, short: dur < 3*time.Minute, plan: &txPlan{}}
	for _, tb := range tables {
		tb.live, tb.big, tb.next, tb.hist = newKeyset(), newKeyset(), 1, map[int64][]string{}
		var defs []string
		for _, c := range tb.cols {
			defs = append(defs, fmt.Sprintf("%s %s", schema.QuoteIdent(c.name), c.sqlType))
		}
		testenv.Exec(t, mono, fmt.Sprintf("CREATE TABLE %s (id %s PRIMARY KEY, %s)", tb.ident(), tb.keyType, strings.Join(defs, ", ")))
		if tb.full {
			testenv.Exec(t, mono, fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL", tb.ident()))
		}
		// Rows present before scoop starts travel through the initial snapshot.
		p := &txPlan{kind: "initial", ops: []top{g.opCopy(tb, 200, "initial")}}
		p.touched, g.plan.touched = g.plan.touched, nil
		st := &tortureStats{ops: map[string]int{}}
		if err := execPlan(ctx, mono, p, st); err != nil {
			t.Fatal(err)
		}
	}
	maps := []tmapping{
		{name: "acct-pg", tb: both, store: "pg", target: both.name + "_copy", rename: map[string]string{"name": "full_name"}, exclude: map[string]bool{"secret": true}},
		{name: "acct-cass", tb: both, store: "cassandra", target: both.name, exclude: map[string]bool{"secret": true}},
		{name: "ledger-pg", tb: ledger, store: "pg", target: ledger.name},
		{name: "events-cass", tb: events, store: "cassandra", target: events.name, rename: map[string]string{"kind": "event_kind"}},
	}
	var yaml strings.Builder
	yaml.WriteString("mappings:\n")
	for _, m := range maps {
		store := map[string]string{"pg": "accounts", "cassandra": "orders"}[m.store]
		fmt.Fprintf(&yaml, "  - name: %s\n    source: public.%s\n    store: %s\n    target: %s\n", m.name, m.tb.name, store, m.target)
		if len(m.rename) > 0 || len(m.exclude) > 0 {
			yaml.WriteString("    columns:\n")
			for k := range m.exclude {
				fmt.Fprintf(&yaml, "      exclude: [%s]\n", k)
			}
			for k, v := range m.rename {
				fmt.Fprintf(&yaml, "      rename: {%s: %s}\n", k, v)
			}
		}
	}
	e := newE2E(t, yaml.String())
	batch := []string{"50", "500", "5000"}[r.Intn(3)]
	sup := &scoopSupervisor{t: t, env: append(e.env, "SCOOP_SINK_BATCH="+batch)}
	fmt.Printf("torture: tables %s_{acct,ledger,events}, keyspace %s, topic prefix %s, SCOOP_SINK_BATCH=%s\n", run, e.keyspace, e.prefix, batch)
	sup.start()
	g.run = 1
	t.Cleanup(func() {
		if !sup.exited() {
			sup.kill()
		}
	})
	// Kafka is restarted once; whatever happens, it is up when the test ends.
	t.Cleanup(func() {
		if err := testenv.Stack("up", "kafka"); err != nil {
			t.Errorf("bring Kafka back: %v", err)
		}
	})

	st := &tortureStats{ops: map[string]int{}, compared: map[string]int{}}
	cr := rand.New(rand.NewSource(seed ^ 0x5eed))
	start := time.Now()
	nextKill := start.Add(time.Duration(5+cr.Intn(15)) * time.Second)
	kafkaAt := start.Add(dur * time.Duration(30+cr.Intn(30)) / 100)
	kafkaDown := time.Duration(3+cr.Intn(6)) * time.Second
	kafkaErr := make(chan error, 1)
	kafkaStarted := false
	if v := os.Getenv("TORTURE_KINDS"); v != "" {
		g.only = map[string]bool{}
		for _, k := range strings.Split(v, ",") {
			if !slicesContains(tortureKinds, k) {
				t.Fatalf("TORTURE_KINDS: unknown kind %q (fix: a comma-separated list of %s)", k, strings.Join(tortureKinds, ", "))
			}
			g.only[k] = true
		}
		fmt.Printf("torture: TORTURE_KINDS=%s\n", v)
	}
	// TORTURE_CHECK_MODEL=1 checks the generator's key model against the
	// monolith after every transaction (slow; for work on this test).
	checkModel := os.Getenv("TORTURE_CHECK_MODEL") != ""
	var forced []string
	for _, k := range tortureKinds {
		if g.allowed(k) {
			forced = append(forced, k)
		}
	}
	r.Shuffle(len(forced), func(i, j int) { forced[i], forced[j] = forced[j], forced[i] })
	// TORTURE_CHAOS narrows the faults to tell causes apart: off, kills, kafka.
	chaos := os.Getenv("TORTURE_CHAOS")
	killsOn := chaos == "" || chaos == "kills"
	kafkaOn := chaos == "" || chaos == "kafka"
	if chaos != "" {
		fmt.Printf("torture: TORTURE_CHAOS=%s: SIGKILLs %v, Kafka restart %v\n", chaos, killsOn, kafkaOn)
	}
	for time.Since(start) < dur {
		now := time.Now()
		if killsOn && now.After(nextKill) {
			sup.kill()
			st.kills++
			time.Sleep(time.Duration(cr.Intn(2000)) * time.Millisecond)
			sup.start()
			nextKill = time.Now().Add(time.Duration(5+cr.Intn(15)) * time.Second)
			g.run++
		} else if sup.exited() {
			st.selfExits++
			if st.selfExits <= 3 {
				t.Logf("scoop exited by itself; restarting in 1s. log tail:\n%s", tail(sup.lastLog(), 1500))
			}
			time.Sleep(time.Second) // as a service manager's restart delay
			sup.start()
			g.run++
		}
		if kafkaOn && !kafkaStarted && now.After(kafkaAt) {
			kafkaStarted = true
			st.kafkaRestarts++
			go func() {
				if err := testenv.Stack("down", "kafka"); err != nil {
					kafkaErr <- err
					return
				}
				time.Sleep(kafkaDown) // the outage itself
				kafkaErr <- testenv.Stack("up", "kafka")
			}()
		}
		kind := ""
		if len(forced) > 0 {
			kind, forced = forced[0], forced[1:]
		}
		p := g.next(kind)
		if err := execPlan(ctx, mono, p, st); err != nil {
			t.Fatalf("workload (seed %d) transaction %d (%s): %v", seed, st.txs+st.rolledBack+1, p.kind, err)
		}
		if checkModel {
			for _, tb := range tables {
				var n int
				if err := mono.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s", tb.ident())).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != len(tb.live.keys) {
					t.Fatalf("model of %s: %d keys, table has %d rows after transaction %d (%s): %.2000v", tb.name, len(tb.live.keys), n, st.txs+st.rolledBack, p.kind, p.ops)
				}
			}
		}
		time.Sleep(time.Duration(r.Intn(15)) * time.Millisecond)
	}
	if kafkaStarted {
		if err := <-kafkaErr; err != nil {
			t.Fatalf("Kafka restart: %v", err)
		}
	}
	if err := waitKafka(); err != nil {
		t.Fatal(err)
	}
	var endLSN string
	if err := mono.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&endLSN); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("torture: workload stopped after %s; waiting for the stores (slot past %s, consumer groups at the end of the topics)\n", time.Since(start).Round(time.Second), endLSN)

	caughtUp := waitStoresCaughtUp(t, sup, st, e, maps, endLSN, mono)
	diffs := compareAll(t, e, maps, st)
	if len(diffs) > 0 && caughtUp {
		// The groups commit after the stores did, so this is final; one more
		// look after a pause shows it (a changing count would mean the
		// caught-up test is wrong).
		time.Sleep(5 * time.Second)
		first := len(diffs)
		st.compared = map[string]int{}
		diffs = compareAll(t, e, maps, st)
		fmt.Printf("torture: differences %d at catch-up, %d five seconds later\n", first, len(diffs))
	}
	diffFile := fmt.Sprintf("%s/torture-%d.diffs", os.TempDir(), seed)
	if len(diffs) > 0 {
		var all strings.Builder
		for _, d := range diffs {
			all.WriteString(d.String() + "\n")
		}
		os.WriteFile(diffFile, []byte(all.String()), 0o644)
	}
	dlq := len(testenv.ReadTopic(t, e.prefix+".dlq", 0, 0))
	// The checker checks itself: with scoop stopped, every compared column of
	// one row per mapping is changed in the store, one row is deleted and one
	// added; each must show up as a difference.
	sup.kill()
	if missed := tamperCheck(t, e, maps, diffs); len(missed) > 0 {
		t.Errorf("the checker missed %d tampered store values: %s", len(missed), strings.Join(missed, "; "))
	} else {
		fmt.Println("torture: checker self-test: every tampered store value, deleted and added row was reported")
	}

	var kinds []string
	for k := range st.ops {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, st.ops[k]))
	}
	sort.Strings(kinds)
	var rep strings.Builder
	fmt.Fprintf(&rep, "torture: seed %d, workload %s, SCOOP_SINK_BATCH=%s\n", seed, dur, batch)
	fmt.Fprintf(&rep, "  transactions by kind: %s\n", strings.Join(kinds, " "))
	fmt.Fprintf(&rep, "  transactions: %d committed, %d rolled back; rows written %d\n", st.txs, st.rolledBack, st.rows)
	fmt.Fprintf(&rep, "  scoop SIGKILLs %d, exits by itself %d, Kafka restarts %d, dead letters %d\n", st.kills, st.selfExits, st.kafkaRestarts, dlq)
	for _, m := range maps {
		fmt.Fprintf(&rep, "  rows compared %s (%s %s): %d\n", m.name, m.store, m.target, st.compared[m.name])
	}
	fmt.Fprintf(&rep, "  caught up: %v; differences: %d\n", caughtUp, len(diffs))
	summary := map[string]int{}
	for _, d := range diffs {
		summary[d.mapping+" "+d.what()]++
	}
	var sk []string
	for k, n := range summary {
		sk = append(sk, fmt.Sprintf("    %5d  %s", n, k))
	}
	sort.Strings(sk)
	if len(sk) > 0 {
		rep.WriteString("  differences by mapping and kind:\n" + strings.Join(sk, "\n") + "\n")
	}
	for i, d := range diffs {
		if i == 20 {
			fmt.Fprintf(&rep, "  ... %d more\n", len(diffs)-20)
			break
		}
		fmt.Fprintf(&rep, "  %s\n", d)
	}
	if len(diffs) > 0 {
		fmt.Fprintf(&rep, "  every difference: %s\n", diffFile)
	}
	fmt.Print(rep.String())
	if len(diffs) > 0 || !caughtUp {
		t.Fatalf("%d differences between the monolith and the stores (seed %d; TORTURE_SEED=%d reproduces the operations)\nlast scoop log tail:\n%s",
			len(diffs), seed, seed, tail(sup.lastLog(), 3000))
	}
}

// waitKafka waits until the broker answers a metadata request again.
func waitKafka() error {
	admin, err := kafka.NewAdmin([]string{testenv.Broker()}, kafka.Security{})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := admin.Ranges(ctx, "__consumer_offsets")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kafka does not answer after its restart: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitStoresCaughtUp waits until the slot confirmed everything written and every
// mapping's consumer group committed the end of its topic, restarting scoop
// if it exits. It returns false after its timeout.
func waitStoresCaughtUp(t *testing.T, sup *scoopSupervisor, st *tortureStats, e *e2e, maps []tmapping, endLSN string, mono *pgx.Conn) bool {
	admin, err := kafka.NewAdmin([]string{testenv.Broker()}, kafka.Security{})
	if err != nil {
		t.Fatal(err)
	}
	timeout := 5*time.Minute + tortureDuration(t)/2
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		if sup.exited() {
			st.selfExits++
			t.Logf("scoop exited by itself; restarting in 1s. log tail:\n%s", tail(sup.lastLog(), 1500))
			time.Sleep(time.Second)
			sup.start()
		}
		lag, err := lagOf(admin, mono, e, maps, endLSN)
		if err == nil && lag == "" {
			return true
		}
		if err != nil {
			lag = err.Error()
		}
		last = lag
		if time.Now().After(deadline) {
			fmt.Printf("torture: not caught up after %s: %s\n", timeout, last)
			return false
		}
		time.Sleep(time.Second)
	}
}

// lagOf says what is still behind ("" when nothing is).
func lagOf(admin *kafka.Admin, mono *pgx.Conn, e *e2e, maps []tmapping, endLSN string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var behind bool
	err := mono.QueryRow(ctx, `SELECT coalesce(confirmed_flush_lsn < $2::pg_lsn, true) FROM pg_replication_slots WHERE slot_name = $1`, e.slot, endLSN).Scan(&behind)
	if err != nil {
		return "", fmt.Errorf("read slot %s: %w", e.slot, err)
	}
	if behind {
		return "slot " + e.slot + " behind " + endLSN, nil
	}
	for _, m := range maps {
		topic := pipeline.TopicFor(e.prefix, "public", m.tb.name)
		ranges, err := admin.Ranges(ctx, topic)
		if err != nil {
			return "", err
		}
		var ps []int
		for _, rg := range ranges {
			ps = append(ps, rg.Partition)
		}
		committed, err := admin.Committed(ctx, e.prefix+"."+m.name, topic, ps)
		if err != nil {
			return "", err
		}
		for _, rg := range ranges {
			if committed[rg.Partition] < rg.End {
				return fmt.Sprintf("group of %s at %d of %d in partition %d", m.name, committed[rg.Partition], rg.End, rg.Partition), nil
			}
		}
	}
	return "", nil
}

// tmapping is a mapping of the run, as written to the mapping file.
type tmapping struct {
	name, store, target string
	tb                  *ttable
	rename              map[string]string
	exclude             map[string]bool
}

// tdiff is one difference between the monolith and a store.
type tdiff struct {
	mapping, table, key, column, mono, store, hist string
}

func (d tdiff) what() string {
	switch d.column {
	case "(row missing)", "(row extra)":
		return d.column
	}
	return "column " + d.column
}

func (d tdiff) String() string {
	return fmt.Sprintf("%s: table %s key %s %s: monolith %s, store %s [history: %s]", d.mapping, d.table, d.key, d.column, d.mono, d.store, d.hist)
}

// compareAll compares every mapping's store table with the monolith table.
func compareAll(t *testing.T, e *e2e, maps []tmapping, st *tortureStats) []tdiff {
	var diffs []tdiff
	for _, m := range maps {
		src, err := readPG("monolith", m.tb.name)
		if err != nil {
			t.Fatalf("read monolith %s: %v", m.tb.name, err)
		}
		var dst map[string]map[string]any
		if m.store == "pg" {
			dst, err = readPG("service", m.target)
		} else {
			dst, err = readCassandra(e.keyspace, m.target)
		}
		if err != nil {
			diffs = append(diffs, tdiff{mapping: m.name, table: m.target, key: "-", column: "(table unreadable)", mono: "-", store: err.Error()})
			continue
		}
		st.compared[m.name] = len(dst)
		diffs = append(diffs, compareTable(m, src, dst)...)
	}
	return diffs
}

func compareTable(m tmapping, src, dst map[string]map[string]any) []tdiff {
	var keys []string
	for k := range src {
		keys = append(keys, k)
	}
	for k := range dst {
		if src[k] == nil {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, _ := strconv.ParseInt(keys[i], 10, 64)
		b, _ := strconv.ParseInt(keys[j], 10, 64)
		return a < b
	})
	var diffs []tdiff
	for _, k := range keys {
		kn, _ := strconv.ParseInt(k, 10, 64)
		hist := strings.Join(m.tb.hist[kn], ",")
		s, d := src[k], dst[k]
		switch {
		case d == nil:
			diffs = append(diffs, tdiff{m.name, m.target, k, "(row missing)", "present", "absent", hist})
			continue
		case s == nil:
			diffs = append(diffs, tdiff{m.name, m.target, k, "(row extra)", "absent", "present", hist})
			continue
		}
		for _, c := range m.tb.cols {
			if m.exclude[c.name] {
				if _, ok := d[c.name]; ok {
					diffs = append(diffs, tdiff{m.name, m.target, k, c.name, "(excluded)", "present", hist})
				}
				continue
			}
			name := c.name
			if r, ok := m.rename[name]; ok {
				name = r
			}
			sv := normValue(c.kind, m.store, false, s[c.name])
			dv, ok := d[name]
			dn := "(no such column)"
			if ok {
				dn = normValue(c.kind, m.store, true, dv)
			}
			if sv != dn {
				diffs = append(diffs, tdiff{m.name, m.target, k, name, show(sv), show(dn), hist})
			}
		}
	}
	return diffs
}

func show(v string) string {
	if len(v) <= 60 {
		return strconv.Quote(v)
	}
	h := sha256.Sum256([]byte(v))
	return fmt.Sprintf("%q...(%d bytes, sha256 %x)", v[:40], len(v), h[:4])
}

// normValue is a value's canonical text for comparison. Values come from
// to_jsonb (PostgreSQL) or SELECT JSON (Cassandra) decoded with UseNumber.
func normValue(kind, store string, inStore bool, v any) string {
	if v == nil {
		return "NULL"
	}
	switch kind {
	case "numeric", "int":
		s := fmt.Sprint(v)
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return "unparsable number " + s
		}
		return r.RatString()
	case "ts":
		s, _ := v.(string)
		var tm time.Time
		var err error
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z0700"} {
			if tm, err = time.Parse(layout, s); err == nil {
				break
			}
		}
		if err != nil {
			return "unparsable timestamp " + s
		}
		tm = tm.UTC()
		if store == "cassandra" { // Cassandra keeps milliseconds
			return tm.Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z")
		}
		return tm.Format("2006-01-02T15:04:05.000000Z")
	case "jsonb":
		if s, ok := v.(string); ok && store == "cassandra" && inStore {
			dec := json.NewDecoder(strings.NewReader(s))
			dec.UseNumber()
			var x any
			if err := dec.Decode(&x); err != nil {
				return "not JSON: " + s
			}
			v = x
		}
		b, _ := json.Marshal(v)
		return string(b)
	case "bool":
		return fmt.Sprint(v)
	default:
		if s, ok := v.(string); ok {
			return s
		}
		return fmt.Sprintf("(not text: %v)", v)
	}
}

func decodeRow(text string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var row map[string]any
	if err := dec.Decode(&row); err != nil {
		return nil, err
	}
	return row, nil
}

// readPG reads a table as rows keyed by id.
func readPG(db, table string) (map[string]map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, testenv.PGURL(db))
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, fmt.Sprintf(`SELECT to_jsonb(t)::text FROM %s t`, schema.QuoteIdent(table)))
	if err != nil {
		return nil, err
	}
	texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	return keyed(texts)
}

func keyed(texts []string) (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	for _, s := range texts {
		row, err := decodeRow(s)
		if err != nil {
			return nil, fmt.Errorf("decode %.100s: %w", s, err)
		}
		out[fmt.Sprint(row["id"])] = row
	}
	return out, nil
}

// readCassandra reads a table with SELECT JSON (nulls stay nulls).
func readCassandra(keyspace, table string) (map[string]map[string]any, error) {
	cl := gocql.NewCluster("127.0.0.1")
	fmt.Sscan(testenv.CassandraPort, &cl.Port)
	cl.Keyspace = keyspace
	cl.Timeout = 30 * time.Second
	s, err := cl.CreateSession()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	iter := s.Query(fmt.Sprintf(`SELECT JSON * FROM %s`, schema.QuoteIdent(table))).PageSize(2000).Iter()
	var texts []string
	var text string
	for iter.Scan(&text) {
		texts = append(texts, text)
	}
	if err := iter.Close(); err != nil {
		return nil, err
	}
	return keyed(texts)
}

// tamperCheck changes the stores behind the checker's back and returns the
// changes the checker did not report.
func tamperCheck(t *testing.T, e *e2e, maps []tmapping, before []tdiff) []string {
	ctx := context.Background()
	seen := map[string]bool{}
	for _, d := range before {
		seen[d.mapping+"|"+d.key] = true
	}
	svc := testenv.Conn(t, "service")
	var cs *gocql.Session
	want := map[string]bool{}
	for _, m := range maps {
		src, err := readPG("monolith", m.tb.name)
		if err != nil {
			t.Fatal(err)
		}
		var keys []int64
		for k := range src {
			n, _ := strconv.ParseInt(k, 10, 64)
			if !seen[m.name+"|"+k] {
				keys = append(keys, n)
			}
		}
		if len(keys) < 2 {
			continue
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		changed, gone := keys[0], keys[len(keys)-1]
		extra := int64(2_000_000_000)
		want[fmt.Sprintf("%s|%d|(row missing)", m.name, gone)] = true
		want[fmt.Sprintf("%s|%d|(row extra)", m.name, extra)] = true
		if m.store == "cassandra" && cs == nil {
			cs = cassandraSession(t, e.keyspace)
		}
		exec := func(sql string, args ...any) error {
			if m.store == "cassandra" {
				return cs.Query(sql, args...).Exec()
			}
			for i := 1; strings.Contains(sql, "?"); i++ {
				sql = strings.Replace(sql, "?", fmt.Sprintf("$%d", i), 1)
			}
			_, err := svc.Exec(ctx, sql, args...)
			return err
		}
		tgt := schema.QuoteIdent(m.target)
		for _, sql := range []string{"DELETE FROM %s WHERE id = ?", "INSERT INTO %s (id) VALUES (?)"} {
			k := gone
			if strings.HasPrefix(sql, "INSERT") {
				k = extra
			}
			if err := exec(fmt.Sprintf(sql, tgt), k); err != nil {
				t.Fatalf("tamper %s: %v", m.name, err)
			}
		}
		for _, c := range m.tb.cols {
			if m.exclude[c.name] {
				continue
			}
			name := c.name
			if r, ok := m.rename[name]; ok {
				name = r
			}
			cur := normValue(c.kind, m.store, false, src[strconv.FormatInt(changed, 10)][c.name])
			var v any
			switch c.kind {
			case "text", "big":
				v = "tampered"
			case "numeric":
				v = "12345678.91"
				if m.store == "cassandra" {
					v = inf.NewDec(1234, 6)
				}
			case "int":
				v = "987654"
				if m.store == "cassandra" {
					v = 987654
				}
			case "ts":
				v = "1971-02-03 04:05:06.007+00"
				if m.store == "cassandra" {
					v = time.Date(1971, 2, 3, 4, 5, 6, 7e6, time.UTC)
				}
			case "jsonb":
				v = `{"tampered": 1}`
			case "bool":
				v = fmt.Sprint(cur != "true")
				if m.store == "cassandra" {
					v = cur != "true"
				}
			}
			set := "?"
			if m.store == "pg" {
				set = "CAST(?::text AS " + c.sqlType + ")"
			}
			if err := exec(fmt.Sprintf("UPDATE %s SET %s = %s WHERE id = ?", tgt, schema.QuoteIdent(name), set), v, changed); err != nil {
				t.Logf("tamper %s column %s: %v (column not in the store; its absence is reported already)", m.name, name, err)
				continue
			}
			want[fmt.Sprintf("%s|%d|%s", m.name, changed, name)] = true
		}
	}
	st := &tortureStats{compared: map[string]int{}}
	got := map[string]bool{}
	for _, d := range compareAll(t, e, maps, st) {
		got[d.mapping+"|"+d.key+"|"+d.column] = true
	}
	var missed []string
	for w := range want {
		if !got[w] {
			missed = append(missed, w)
		}
	}
	sort.Strings(missed)
	return missed
}
