package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/connectors/cassandra"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// store is one sink under test plus a way to read its rows back.
type store struct {
	name string
	open func(t *testing.T, target pipeline.Target, topic string) pipeline.Sink
	// read returns column -> value text of the row with integer key id, nil if absent.
	read func(t *testing.T, table string, id int) map[string]string
}

func pgStore(method string) store {
	return store{
		name: "postgres-" + method,
		open: func(t *testing.T, target pipeline.Target, topic string) pipeline.Sink {
			s, err := postgres.NewSink(context.Background(), postgres.SinkConfig{URL: testenv.PGURL("service"), Mapping: target.Table, Topic: topic, Target: target, Method: method})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close(context.Background()) })
			return s
		},
		read: readPostgres,
	}
}

func readPostgres(t *testing.T, table string, id int) map[string]string {
	c := testenv.Conn(t, "service")
	var js *string
	err := c.QueryRow(context.Background(), fmt.Sprintf(`SELECT (SELECT jsonb_object_agg(key, value #>> '{}') FROM jsonb_each(to_jsonb(t)))::text FROM %q t WHERE id = $1`, table), id).Scan(&js)
	if err == pgx.ErrNoRows {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	json.Unmarshal([]byte(*js), &out)
	return out
}

func stores(t *testing.T) []store {
	testenv.Require(t)
	keyspace := testenv.Name("conf")
	return []store{
		pgStore(postgres.MethodCopy),
		pgStore(postgres.MethodInsert),
		{
			name: "cassandra",
			open: func(t *testing.T, target pipeline.Target, topic string) pipeline.Sink {
				s, err := cassandra.NewSink(context.Background(), cassandra.SinkConfig{URL: "cassandra://" + testenv.CassandraAddr() + "/" + keyspace, Mapping: target.Table, Target: target})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close(context.Background()) })
				return s
			},
			read: func(t *testing.T, table string, id int) map[string]string {
				cl := gocql.NewCluster("127.0.0.1")
				fmt.Sscan(testenv.CassandraPort, &cl.Port)
				sess, err := cl.CreateSession()
				if err != nil {
					t.Fatal(err)
				}
				defer sess.Close()
				m := map[string]any{}
				if err := sess.Query(fmt.Sprintf(`SELECT * FROM %q.%q WHERE id = ?`, keyspace, table), id).MapScan(m); err != nil {
					if err == gocql.ErrNotFound {
						return nil
					}
					t.Fatal(err)
				}
				out := map[string]string{}
				for k, v := range m {
					switch v := v.(type) {
					case []byte:
						out[k] = string(v)
					case time.Time:
						out[k] = v.UTC().Format(time.RFC3339Nano)
					default:
						out[k] = fmt.Sprint(v)
					}
				}
				return out
			},
		},
	}
}

var basicTarget = func(table string) pipeline.Target {
	return pipeline.Target{Table: table, Columns: []pipeline.Column{
		{Name: "id", Source: "id", SQLType: "integer", BaseType: "int4", Key: true},
		{Name: "name", Source: "name", SQLType: "text", BaseType: "text"},
		{Name: "n", Source: "n", SQLType: "bigint", BaseType: "int8"},
		{Name: "big", Source: "big", SQLType: "text", BaseType: "text"},
	}}
}

// change builds a change at a commit time (seconds after a base) and offset.
func change(op schema.Op, id int, after string, sec int, offset int64, unchanged ...string) pipeline.Change {
	c := pipeline.Change{Op: op, Key: map[string]json.RawMessage{"id": json.RawMessage(fmt.Sprint(id))},
		CommitTime: time.Date(2026, 1, 1, 0, 0, sec, 0, time.UTC), Topic: "conformance", Offset: offset}
	if after != "" {
		json.Unmarshal([]byte(after), &c.After)
	}
	if len(unchanged) > 0 {
		c.Unchanged = map[string]bool{}
		for _, u := range unchanged {
			c.Unchanged[u] = true
		}
	}
	return c
}

func apply(t *testing.T, s pipeline.Sink, cs ...pipeline.Change) {
	t.Helper()
	if err := s.Apply(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
}

func want(t *testing.T, st store, table string, id int, col, val string) {
	t.Helper()
	row := st.read(t, table, id)
	if row == nil {
		t.Fatalf("%s: row %d missing", st.name, id)
	}
	if row[col] != val {
		t.Fatalf("%s: row %d %s = %q, want %q", st.name, id, col, row[col], val)
	}
}

func wantAbsent(t *testing.T, st store, table string, id int) {
	t.Helper()
	if row := st.read(t, table, id); row != nil {
		t.Fatalf("%s: row %d present: %v", st.name, id, row)
	}
}

func TestSinkConformance(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			table := testenv.Name("conf")
			s := st.open(t, basicTarget(table), table)
			// insert, then update, delete and an unchanged TOAST column.
			apply(t, s,
				change(schema.OpRead, 1, `{"id":1,"name":"one","n":1,"big":"BIG1"}`, 1, 0),
				change(schema.OpCreate, 2, `{"id":2,"name":"two","n":2,"big":"BIG2"}`, 2, 1),
				change(schema.OpCreate, 3, `{"id":3,"name":"three","n":3,"big":"BIG3"}`, 3, 2),
			)
			want(t, st, table, 1, "name", "one")
			apply(t, s,
				change(schema.OpUpdate, 1, `{"id":1,"name":"uno","n":9223372036854775807}`, 4, 3, "big"),
				change(schema.OpDelete, 3, ``, 5, 4),
			)
			want(t, st, table, 1, "name", "uno")
			want(t, st, table, 1, "n", "9223372036854775807")
			want(t, st, table, 1, "big", "BIG1") // unchanged TOAST left alone
			wantAbsent(t, st, table, 3)

			// Two changes of one key in one batch: the last wins, and an
			// unchanged column takes the earlier value of the same batch.
			apply(t, s,
				change(schema.OpUpdate, 2, `{"id":2,"name":"dos","n":2,"big":"BIG2b"}`, 6, 5),
				change(schema.OpUpdate, 2, `{"id":2,"name":"deux","n":2}`, 7, 6, "big"),
			)
			want(t, st, table, 2, "name", "deux")
			want(t, st, table, 2, "big", "BIG2b")

			// Replay of old events (a rewind): the rows do not regress.
			apply(t, s,
				change(schema.OpCreate, 1, `{"id":1,"name":"one","n":1,"big":"BIG1"}`, 1, 0),
				change(schema.OpCreate, 3, `{"id":3,"name":"three","n":3,"big":"BIG3"}`, 3, 2),
				change(schema.OpDelete, 3, ``, 5, 4),
			)
			want(t, st, table, 1, "name", "uno")
			wantAbsent(t, st, table, 3)

			// Restart mid-batch: a new sink gets a batch overlapping what the
			// old one applied; the result is as if applied once.
			s.Close(context.Background())
			s2 := st.open(t, basicTarget(table), table)
			apply(t, s2,
				change(schema.OpUpdate, 2, `{"id":2,"name":"dos","n":2,"big":"BIG2b"}`, 6, 5),
				change(schema.OpUpdate, 2, `{"id":2,"name":"deux","n":2}`, 7, 6, "big"),
				change(schema.OpCreate, 4, `{"id":4,"name":"four","n":4,"big":"BIG4"}`, 8, 7),
			)
			want(t, st, table, 2, "name", "deux")
			want(t, st, table, 4, "name", "four")

			// Truncate empties the table.
			apply(t, s2, pipeline.Change{Op: schema.OpTruncate, CommitTime: time.Date(2026, 1, 1, 0, 0, 9, 0, time.UTC), Topic: table, Offset: 8})
			wantAbsent(t, st, table, 1)
		})
	}
}

// TestSinkTypes applies the all-types event (testdata/golden) to both sinks
// and reads typed values back.
func TestSinkTypes(t *testing.T) {
	golden, err := os.ReadFile(testenv.Root() + "/testdata/golden/all_types.after.json")
	if err != nil {
		t.Fatal(err)
	}
	mono := testenv.Conn(t, "monolith")
	src := testenv.Name("types")
	sql, _ := os.ReadFile(testenv.Root() + "/testdata/sql/all_types.sql")
	testenv.Exec(t, mono, strings.ReplaceAll(string(sql), "{{table}}", fmt.Sprintf("%q", src)))
	cols, err := postgres.DescribeColumns(context.Background(), testenv.PGURL("monolith"), postgres.TableName{Schema: "public", Name: src})
	if err != nil {
		t.Fatal(err)
	}
	var after map[string]json.RawMessage
	json.Unmarshal(golden, &after)
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			m := &pipeline.Mapping{Name: "types", Source: "public." + src, Target: testenv.Name("types")}
			if st.name == "cassandra" {
				// Values Cassandra cannot hold go to the dead-letter topic; see docs/sinks.md.
				m.Columns.Exclude = []string{"c_ts_inf", "c_int_arr", "c_text_arr", "c_2d_arr", "c_num_arr"}
			}
			target, err := m.ShapeTarget(cols)
			if err != nil {
				t.Fatal(err)
			}
			s := st.open(t, target, m.Target)
			c := pipeline.Change{Op: schema.OpRead, Key: map[string]json.RawMessage{"id": after["id"]}, After: map[string]json.RawMessage{}, CommitTime: time.Now(), Topic: m.Target}
			for _, col := range target.Columns {
				c.After[col.Name] = after[col.Source]
			}
			apply(t, s, c)
			row := st.read(t, m.Target, 1)
			checks := map[string]string{
				"c_int8": "9223372036854775807", "c_text": "line1\nline2 \"quoted\" \\ back", "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
				"c_numeric": "12345678901234567890.0123456789", "c_bool": "true", "c_enum": "happy", "c_domain": "7",
			}
			if strings.HasPrefix(st.name, "postgres") {
				checks["c_bytea"] = `\x00ff10`
				checks["c_timestamptz"] = "2024-02-29T10:34:56.789+00:00"
				checks["c_int_arr"] = "[1, null, 3]"
				checks["c_jsonb"] = `{"a": [true, null], "b": 1}`
				checks["c_json"] = `{"a": [true, null], "b": 1}` // read through to_jsonb
				checks["c_jsonb_arr"] = `[{"k": 1}, null]`
				// Debezium's Date, MicroTimestamp, MicroTime, ZonedTime, Interval.
				checks["c_date"] = "2024-02-29"
				checks["c_timestamp"] = "2024-02-29T12:34:56.789"
				checks["c_time"] = "23:59:59.999999"
				checks["c_timetz"] = "12:00:00+05:30"
				checks["c_interval"] = "1 year 2 mons 3 days 04:05:06.5"
			} else {
				checks["c_date"] = "2024-02-29T00:00:00Z"
				checks["c_timestamp"] = "2024-02-29T12:34:56.789Z"
				checks["c_json"] = `{"b": 1, "a": [true, null]}`
				checks["c_bytea"] = "\x00\xff\x10"
				checks["c_timestamptz"] = "2024-02-29T10:34:56.789Z"
				checks["c_enum_arr"] = "[sad happy]"
			}
			for col, v := range checks {
				if row[col] != v {
					t.Errorf("%s: %s = %q, want %q", st.name, col, row[col], v)
				}
			}
		})
	}
}

// TestSinkBulk: large batches (the COPY path of the PostgreSQL sink):
// inserts, then updates, deletes and re-inserts of the same keys in one
// batch, a truncate in the middle of a batch, and values that need escaping.
func TestSinkBulk(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			table := testenv.Name("bulk")
			s := st.open(t, basicTarget(table), table)
			var batch []pipeline.Change
			off := int64(0)
			add := func(op schema.Op, id int, after string, unchanged ...string) {
				batch = append(batch, change(op, id, after, int(off/1000), off, unchanged...))
				off++
			}
			for id := 1; id <= 100; id++ {
				add(schema.OpCreate, id, fmt.Sprintf(`{"id":%d,"name":"n%d","n":%d,"big":"tab\there\nnewline \\ back"}`, id, id, id))
			}
			for id := 1; id <= 100; id += 2 {
				add(schema.OpUpdate, id, fmt.Sprintf(`{"id":%d,"name":"odd%d","n":%d}`, id, id, id*10), "big")
			}
			for id := 2; id <= 100; id += 10 {
				add(schema.OpDelete, id, ``)
			}
			add(schema.OpCreate, 2, `{"id":2,"name":"back","n":2,"big":null}`)
			apply(t, s, batch...)
			want(t, st, table, 1, "name", "odd1")
			want(t, st, table, 1, "big", "tab\there\nnewline \\ back")
			want(t, st, table, 3, "n", "30")
			want(t, st, table, 4, "name", "n4")
			wantAbsent(t, st, table, 12)
			want(t, st, table, 2, "name", "back")

			batch = nil
			for id := 1; id <= 20; id++ {
				add(schema.OpUpdate, id, fmt.Sprintf(`{"id":%d,"name":"before-truncate","n":0,"big":"x"}`, id))
			}
			batch = append(batch, pipeline.Change{Op: schema.OpTruncate, CommitTime: time.Date(2026, 1, 1, 0, 0, int(off/1000), 0, time.UTC), Topic: table, Offset: off})
			off++
			for id := 5; id <= 30; id++ {
				add(schema.OpCreate, id, fmt.Sprintf(`{"id":%d,"name":"after-truncate","n":1,"big":"y"}`, id))
			}
			apply(t, s, batch...)
			wantAbsent(t, st, table, 1)
			wantAbsent(t, st, table, 40)
			want(t, st, table, 5, "name", "after-truncate")
			want(t, st, table, 30, "name", "after-truncate")
		})
	}
}

// TestSinkBulkShapes: one batch with two large groups of different written
// columns (the PostgreSQL sink stages both through its one staging table in
// one transaction: the first group's merge must read the first group).
func TestSinkBulkShapes(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			table := testenv.Name("shapes")
			s := st.open(t, basicTarget(table), table)
			var batch []pipeline.Change
			for id := 1; id <= 20; id++ {
				after := fmt.Sprintf(`{"id":%d,"name":"full%d","n":%d,"big":"b%d"}`, id, id, id, id)
				if id > 10 {
					after = fmt.Sprintf(`{"id":%d,"name":"part%d","n":%d}`, id, id, id)
				}
				batch = append(batch, change(schema.OpCreate, id, after, 1, int64(id)))
			}
			apply(t, s, batch...)
			for _, id := range []int{1, 10} {
				want(t, st, table, id, "name", fmt.Sprintf("full%d", id))
				want(t, st, table, id, "big", fmt.Sprintf("b%d", id))
			}
			for _, id := range []int{11, 20} {
				want(t, st, table, id, "name", fmt.Sprintf("part%d", id))
				want(t, st, table, id, "n", fmt.Sprint(id))
			}
		})
	}
}

// at sets a change's source position: commit LSN, place in the
// transaction, and place among the transaction's changes of its key.
func at(c pipeline.Change, commitLSN, lsn, order, keyOrder uint64) pipeline.Change {
	c.CommitLSN, c.LSN, c.Order, c.KeyOrder = commitLSN, lsn, order, keyOrder
	return c
}

// A Kafka partition is not monotonic in source positions: a source that
// restarted repeats a suffix, a failed write can leave [B, A, B], and the
// rows of one COPY share an LSN. No sink may skip a change it never
// applied because a later position was seen first.
func TestSinkNonMonotonicLog(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			table := testenv.Name("order")
			s := st.open(t, basicTarget(table), table)
			// [B, A, B]: B (a later transaction) was written before A.
			b := at(change(schema.OpCreate, 20, `{"id":20,"name":"b","n":2}`, 20, 0), 200, 190, 1, 1)
			a := at(change(schema.OpCreate, 10, `{"id":10,"name":"a","n":1}`, 10, 1), 100, 90, 1, 1)
			apply(t, s, b)
			b2 := b
			b2.Offset = 2
			apply(t, s, a, b2)
			want(t, st, table, 10, "name", "a")
			want(t, st, table, 20, "name", "b")

			// One COPY: every row has the same LSN, split over batches.
			var first, second []pipeline.Change
			for i := 1; i <= 20; i++ {
				c := at(change(schema.OpCreate, 100+i, fmt.Sprintf(`{"id":%d,"name":"copy","n":%d}`, 100+i, i), 30, int64(2+i)), 300, 290, uint64(i), 1)
				if i <= 10 {
					first = append(first, c)
				} else {
					second = append(second, c)
				}
			}
			apply(t, s, first...)
			apply(t, s, second...)
			for i := 1; i <= 20; i++ {
				want(t, st, table, 100+i, "name", "copy")
			}
		})
	}
}

// Changes of one key in one transaction share a commit time; cut by a
// batch boundary (or applied one by one after a bisect) they must still
// resolve in source order.
func TestSinkOneKeyManyChangesInOneTransaction(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			table := testenv.Name("intx")
			s := st.open(t, basicTarget(table), table)
			pos := func(c pipeline.Change, order, keyOrder uint64) pipeline.Change {
				return at(c, 500, 490+order, order, keyOrder)
			}
			// DELETE k; INSERT k: the row exists.
			apply(t, s, pos(change(schema.OpCreate, 1, `{"id":1,"name":"old","n":1}`, 40, 0), 1, 1))
			apply(t, s, pos(change(schema.OpDelete, 1, ``, 50, 1), 2, 1))
			apply(t, s, pos(change(schema.OpCreate, 1, `{"id":1,"name":"back","n":1}`, 50, 2), 3, 2))
			want(t, st, table, 1, "name", "back")
			// INSERT k; DELETE k: the row is gone.
			apply(t, s, pos(change(schema.OpCreate, 2, `{"id":2,"name":"brief","n":1}`, 50, 3), 4, 1))
			apply(t, s, pos(change(schema.OpDelete, 2, ``, 50, 4), 5, 2))
			wantAbsent(t, st, table, 2)
			// Two updates: the later one wins even when its value sorts first.
			apply(t, s, pos(change(schema.OpCreate, 3, `{"id":3,"name":"b-first","n":1}`, 50, 5), 6, 1))
			apply(t, s, pos(change(schema.OpUpdate, 3, `{"id":3,"name":"a-second","n":1}`, 50, 6), 7, 2))
			want(t, st, table, 3, "name", "a-second")
		})
	}
}

// A batch that fails in the PostgreSQL sink (a value the column refuses)
// rolls back its transaction, and with it the staging table it created;
// the next batch must not trip over the missing table.
func TestPostgresSinkRecoversAfterFailedBatch(t *testing.T) {
	testenv.Require(t)
	st := pgStore(postgres.MethodCopy)
	table := testenv.Name("poison")
	s := st.open(t, basicTarget(table), table)
	var bad, good []pipeline.Change
	for i := 1; i <= 12; i++ {
		n := fmt.Sprint(i)
		if i == 6 {
			n = `"not a number"`
		}
		bad = append(bad, change(schema.OpCreate, i, fmt.Sprintf(`{"id":%d,"name":"x","n":%s}`, i, n), 1, int64(i)))
		good = append(good, change(schema.OpCreate, 100+i, fmt.Sprintf(`{"id":%d,"name":"y","n":%d}`, 100+i, i), 2, int64(100+i)))
	}
	err := s.Apply(context.Background(), bad)
	if err == nil || !pipeline.IsPermanent(err) || !strings.Contains(err.Error(), "invalid input syntax for type bigint") {
		t.Fatalf("poison batch: got %v, want a permanent error naming the bad value", err)
	}
	apply(t, s, good...)
	want(t, st, table, 112, "name", "y")
}

// Around a rebalance two instances can apply overlapping batches of one
// partition before the group has a progress row for it. The later one must
// see what the earlier one committed, not take an older version of a row
// over a newer one.
func TestPostgresSinkOverlappingFirstBatches(t *testing.T) {
	testenv.Require(t)
	st := pgStore(postgres.MethodInsert)
	table := testenv.Name("overlap")
	first := st.open(t, basicTarget(table), table)
	second := st.open(t, basicTarget(table), table) // same mapping, group and topic
	svc := testenv.Conn(t, "service")
	// The first instance's transaction stays open a while after writing.
	testenv.Exec(t, svc, fmt.Sprintf(`CREATE FUNCTION %[1]s() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.name = 'newer' THEN PERFORM pg_sleep(1.5); END IF; RETURN NEW; END $$;
		CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON %[2]s FOR EACH ROW EXECUTE FUNCTION %[1]s()`,
		schema.QuoteIdent(table+"_slow"), schema.QuoteIdent(table)))
	older := change(schema.OpCreate, 1, `{"id":1,"name":"older","n":1}`, 1, 0)
	newer := change(schema.OpUpdate, 1, `{"id":1,"name":"newer","n":1}`, 2, 1)
	older.Topic, newer.Topic = table, table
	errs := make(chan error, 1)
	go func() { errs <- first.Apply(context.Background(), []pipeline.Change{older, newer}) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		svc.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = 'service'`).Scan(&n)
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first batch never reached its trigger")
		}
		time.Sleep(20 * time.Millisecond)
	}
	apply(t, second, older) // the same offset again, from the other instance
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	want(t, st, table, 1, "name", "newer")
}
