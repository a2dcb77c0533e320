package servicewriter_test

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"
	kafkago "github.com/segmentio/kafka-go"
	"gopkg.in/inf.v0"

	"github.com/scoop-cdc/scoop/connectors/cassandra/servicewriter"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// keyspace opens a session to a new keyspace, dropped when the test ends.
func keyspace(t *testing.T) (*gocql.Session, string) {
	t.Helper()
	testenv.Require(t)
	cl := gocql.NewCluster("127.0.0.1")
	fmt.Sscan(testenv.CassandraPort, &cl.Port)
	cl.Timeout = 20 * time.Second
	cl.Consistency = gocql.LocalQuorum
	s, err := cl.CreateSession()
	if err != nil {
		t.Fatalf("cassandra session: %v", err)
	}
	ks := testenv.Name("sw")
	if err := s.Query("CREATE KEYSPACE " + schema.QuoteIdent(ks) + " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").Exec(); err != nil {
		t.Fatalf("create keyspace: %v", err)
	}
	t.Cleanup(func() {
		s.Query("DROP KEYSPACE IF EXISTS " + schema.QuoteIdent(ks)).Exec()
		s.Close()
	})
	return s, ks
}

const ordersDDL = `(tenant text, id int, at timestamp, big bigint, note text, ok boolean, price decimal, ref uuid, score double, PRIMARY KEY (tenant, id))`

func createTable(t *testing.T, s *gocql.Session, ks, name, ddl string) {
	t.Helper()
	if err := s.Query("CREATE TABLE " + schema.QuoteQualified(ks, name) + " " + ddl).Exec(); err != nil {
		t.Fatalf("create table: %v", err)
	}
}

func newWriter(t *testing.T, cfg servicewriter.Config) *servicewriter.Writer {
	t.Helper()
	w, err := servicewriter.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.Close(ctx)
	})
	return w
}

// op is one write of the seeded sequence, and what its event must say.
type op struct {
	key   int
	del   bool
	row   map[string]any
	after map[string]string // expected JSON of each column (upserts)
}

func keyOf(k int) map[string]any { return map[string]any{"tenant": "t" + strconv.Itoa(k%5), "id": k} }

func randomOp(r *rand.Rand, i int) op {
	k := r.Intn(50)
	if r.Intn(4) == 0 {
		return op{key: k, del: true, row: keyOf(k)}
	}
	at := time.UnixMilli(1_700_000_000_000 + r.Int63n(1_000_000_000)).UTC()
	big := r.Int63() - r.Int63()
	cents := r.Intn(100000)
	score := float64(r.Intn(1000)) / 8
	ref := gocql.UUID{}
	r.Read(ref[:])
	var note any
	noteJSON := "null"
	if r.Intn(3) > 0 {
		note = "write " + strconv.Itoa(i)
		noteJSON = strconv.Quote(note.(string))
	}
	row := keyOf(k)
	row["at"], row["big"], row["note"], row["ok"] = at, big, note, i%2 == 0
	row["price"], row["ref"], row["score"] = fmt.Sprintf("%d.%02d", cents/100, cents%100), ref.String(), score
	return op{key: k, row: row, after: map[string]string{
		"tenant": strconv.Quote(row["tenant"].(string)), "id": strconv.Itoa(k),
		"at": `"` + at.Format(time.RFC3339Nano) + `"`, "big": strconv.FormatInt(big, 10), "note": noteJSON,
		"ok": strconv.FormatBool(i%2 == 0), "price": `"` + row["price"].(string) + `"`, "ref": `"` + ref.String() + `"`,
		"score": strconv.FormatFloat(score, 'g', -1, 64),
	}}
}

// TestWriterLog writes 200 seeded upserts and deletes of 50 keys from four
// goroutines (each key from one of them, so each key has a write order) with
// a clock that stands still and goes back, then checks the reverse topic
// (every event decodes; each key in one partition, Murmur2's; its events in
// write order with strictly increasing timestamps) and the table (the last
// write of each key, at its event's timestamp).
func TestWriterLog(t *testing.T) {
	s, ks := keyspace(t)
	createTable(t, s, ks, "orders", ordersDDL)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewSource(seed))
	base := time.Now()
	var clockSteps int64
	clock := func() time.Time { // called under the writer's lock
		clockSteps += []int64{-3000, 0, 0, 1, 2000}[r.Intn(5)]
		return base.Add(time.Duration(clockSteps) * time.Microsecond)
	}
	prefix := testenv.Name("sw")
	w := newWriter(t, servicewriter.Config{Brokers: []string{testenv.Broker()}, TopicPrefix: prefix, Mapping: "orders",
		Session: s, Keyspace: ks, Table: "orders", Partitions: 3, Clock: clock})

	ops := make([]op, 200)
	for i := range ops {
		ops[i] = randomOp(r, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, o := range ops {
				if o.key%4 != g {
					continue
				}
				var err error
				if o.del {
					err = w.Delete(ctx, o.row)
				} else {
					err = w.Upsert(ctx, o.row)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	msgs := testenv.ReadTopic(t, w.Topic(), len(ops), time.Minute)
	if len(msgs) != len(ops) {
		t.Fatalf("the topic has %d events, want %d", len(msgs), len(ops))
	}
	partitions := map[int]bool{}
	for _, m := range msgs {
		partitions[m.Partition] = true
	}
	ids := []int{0, 1, 2}
	type seen struct {
		ops []schema.Change
		ts  []int64
	}
	byKey := map[string]*seen{}
	part := map[string]int{}
	for _, m := range msgs {
		c, ok, err := schema.DecodeChange(m.Key, m.Value)
		if err != nil || !ok {
			t.Fatalf("offset %d/%d does not decode: %v\n%s", m.Partition, m.Offset, err, m.Value)
		}
		if c.KeyOrder != 1 {
			t.Errorf("offset %d/%d: key_order %d", m.Partition, m.Offset, c.KeyOrder)
		}
		k := string(m.Key)
		if p, ok := part[k]; ok && p != m.Partition {
			t.Errorf("key %s is in partitions %d and %d", k, p, m.Partition)
		}
		part[k] = m.Partition
		if want := (kafkago.Murmur2Balancer{}).Balance(kafkago.Message{Key: m.Key}, ids...); want != m.Partition {
			t.Errorf("key %s is in partition %d, scoop's producer puts it in %d", k, m.Partition, want)
		}
		if byKey[k] == nil {
			byKey[k] = &seen{}
		}
		byKey[k].ops = append(byKey[k].ops, c)
		byKey[k].ts = append(byKey[k].ts, c.CommitTime.UnixMicro())
	}
	expect := map[string][]op{}
	last := map[string]op{}
	for _, o := range ops {
		k := fmt.Sprintf(`{"tenant":%q,"id":%d}`, o.row["tenant"], o.key)
		expect[k] = append(expect[k], o)
		last[k] = o
	}
	if len(byKey) != len(expect) {
		t.Errorf("%d keys in the topic, %d written", len(byKey), len(expect))
	}
	lastTS := map[string]int64{}
	for k, want := range expect {
		got := byKey[k]
		if got == nil {
			got = &seen{}
		}
		if len(got.ops) != len(want) {
			t.Errorf("key %s: %d events, %d writes", k, len(got.ops), len(want))
			continue
		}
		for i, o := range want {
			c := got.ops[i]
			if i > 0 && got.ts[i] <= got.ts[i-1] {
				t.Errorf("key %s: event %d has timestamp %d, not after the previous one's %d", k, i, got.ts[i], got.ts[i-1])
			}
			if o.del != (c.Op == schema.OpDelete) {
				t.Errorf("key %s: event %d is op %c, write %d was delete=%v", k, i, c.Op, i, o.del)
				continue
			}
			for col, v := range o.after {
				if string(c.After[col]) != v {
					t.Errorf("key %s: event %d: %s = %s, written %s", k, i, col, c.After[col], v)
				}
			}
		}
		lastTS[k] = got.ts[len(got.ts)-1]
	}

	// The table holds the last write of each key, at its event's timestamp.
	iter := s.Query("SELECT tenant, id, at, big, note, ok, price, ref, score, WRITETIME(ok) AS wt FROM " + schema.QuoteQualified(ks, "orders")).Iter()
	rows := map[string]map[string]any{}
	for {
		m := map[string]any{}
		if !iter.MapScan(m) {
			break
		}
		rows[fmt.Sprintf(`{"tenant":%q,"id":%d}`, m["tenant"], m["id"])] = m
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	for k, o := range last {
		got, present := rows[k]
		if o.del {
			if present {
				t.Errorf("key %s was deleted last but the table has %v", k, got)
			}
			continue
		}
		if !present {
			t.Errorf("key %s is missing from the table", k)
			continue
		}
		note, _ := o.row["note"].(string)
		same := got["at"].(time.Time).Equal(o.row["at"].(time.Time)) && got["big"] == o.row["big"] && got["note"] == note &&
			got["ok"] == o.row["ok"] && got["price"].(*inf.Dec).String() == o.row["price"] &&
			got["ref"].(gocql.UUID).String() == o.row["ref"] && got["score"] == o.row["score"]
		if !same {
			t.Errorf("key %s: table has %v, last write was %v", k, got, o.row)
		}
		if got["wt"] != lastTS[k] {
			t.Errorf("key %s: written at %v, its event says %d", k, got["wt"], lastTS[k])
		}
	}
	if len(rows) > len(last) {
		t.Errorf("the table has %d rows, %d keys were written", len(rows), len(last))
	}
	t.Logf("%d events on %d partitions, %d rows left", len(msgs), len(partitions), len(rows))
}

// TestOneKeyManyGoroutines: writes of the same keys from eight goroutines
// at once still reach each key's partition in timestamp order.
func TestOneKeyManyGoroutines(t *testing.T) {
	s, ks := keyspace(t)
	createTable(t, s, ks, "orders", ordersDDL)
	w := newWriter(t, servicewriter.Config{Brokers: []string{testenv.Broker()}, TopicPrefix: testenv.Name("sw"), Mapping: "orders",
		Session: s, Keyspace: ks, Table: "orders"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const goroutines, writes = 8, 30
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < writes; i++ {
				o := randomOp(r, g*writes+i)
				o.row["tenant"], o.row["id"] = "t0", i%3
				var err error
				if o.del {
					err = w.Delete(ctx, map[string]any{"tenant": "t0", "id": i % 3})
				} else {
					err = w.Upsert(ctx, o.row)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	msgs := testenv.ReadTopic(t, w.Topic(), goroutines*writes, time.Minute)
	if len(msgs) != goroutines*writes {
		t.Fatalf("%d events, want %d", len(msgs), goroutines*writes)
	}
	prev := map[string]int64{}
	for _, m := range msgs {
		c, _, err := schema.DecodeChange(m.Key, m.Value)
		if err != nil {
			t.Fatal(err)
		}
		ts := c.CommitTime.UnixMicro()
		if p, ok := prev[string(m.Key)]; ok && ts <= p {
			t.Errorf("key %s: offset %d/%d has timestamp %d, after %d at an earlier offset", m.Key, m.Partition, m.Offset, ts, p)
		}
		prev[string(m.Key)] = ts
	}
}

// countRows counts the rows of a table.
func countRows(t *testing.T, s *gocql.Session, ks, table string) int {
	t.Helper()
	var n int
	if err := s.Query("SELECT COUNT(*) FROM " + schema.QuoteQualified(ks, table)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKafkaUnreachable: a write that cannot be published returns an error
// and writes nothing to Cassandra.
func TestKafkaUnreachable(t *testing.T) {
	s, ks := keyspace(t)
	createTable(t, s, ks, "orders", ordersDDL)
	w := newWriter(t, servicewriter.Config{Brokers: []string{"127.0.0.1:1"}, TopicPrefix: "scoop", Mapping: "orders",
		Session: s, Keyspace: ks, Table: "orders"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	row := randomOp(rand.New(rand.NewSource(1)), 0).row
	row["note"] = "never"
	err := w.Upsert(ctx, row)
	want := "servicewriter: publish to scoop.reverse.orders (nothing was written to Cassandra): read the topic's metadata: "
	if err == nil || !strings.HasPrefix(err.Error(), want) || servicewriter.IsPublished(err) {
		t.Fatalf("got %v\nwant %s...", err, want)
	}
	if err := w.Delete(ctx, keyOf(1)); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("delete: got %v\nwant %s...", err, want)
	}
	if n := countRows(t, s, ks, "orders"); n != 0 {
		t.Fatalf("Kafka refused the event but the table has %d rows", n)
	}
}

// TestBrokerRefusesEvent: an event Kafka will not take (larger than a
// record may be) fails the write after the topic exists, and nothing is
// written to Cassandra.
func TestBrokerRefusesEvent(t *testing.T) {
	s, ks := keyspace(t)
	createTable(t, s, ks, "orders", ordersDDL)
	w := newWriter(t, servicewriter.Config{Brokers: []string{testenv.Broker()}, TopicPrefix: testenv.Name("sw"), Mapping: "orders",
		Session: s, Keyspace: ks, Table: "orders"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := rand.New(rand.NewSource(2))
	if err := w.Upsert(ctx, randomOp(r, 0).row); err != nil { // creates the topic
		t.Fatal(err)
	}
	big := randomOp(r, 1).row
	big["id"] = 1000
	big["note"] = strings.Repeat("x", 2<<20)
	err := w.Upsert(ctx, big)
	if err == nil || !strings.Contains(err.Error(), "(nothing was written to Cassandra)") {
		t.Fatalf("a 2 MiB event: got %v", err)
	}
	t.Log(err)
	if n := countRows(t, s, ks, "orders"); n != 1 {
		t.Fatalf("the table has %d rows, want the 1 published", n)
	}
}

// TestRefusedInputs: bad rows and tables are refused with their reason,
// before anything is published or written.
func TestRefusedInputs(t *testing.T) {
	s, ks := keyspace(t)
	createTable(t, s, ks, "orders", ordersDDL)
	createTable(t, s, ks, "tagged", `(id int PRIMARY KEY, tags list<text>)`)
	createTable(t, s, ks, "withstatic", `(p int, c int, s text STATIC, PRIMARY KEY (p, c))`)
	ctx := context.Background()
	cfg := servicewriter.Config{Brokers: []string{testenv.Broker()}, TopicPrefix: testenv.Name("sw"), Mapping: "orders", Session: s, Keyspace: ks}
	for table, want := range map[string]string{
		"tagged":     `servicewriter: mapping orders: table ` + ks + `.tagged: column "tags" has CQL type list<text>, which the service writer does not support (supported: text, int, bigint, double, boolean, decimal, timestamp, uuid)`,
		"withstatic": `servicewriter: mapping orders: table ` + ks + `.withstatic: static column "s" is not supported (a static cell belongs to a partition, not to the row an event carries)`,
		"Orders":     `servicewriter: mapping orders: table ` + ks + `.Orders does not exist (create it before the writer; names are case-sensitive)`,
	} {
		c := cfg
		c.Table = table
		if _, err := servicewriter.New(ctx, c); err == nil || err.Error() != want {
			t.Errorf("table %s: got %v\nwant %s", table, err, want)
		}
	}
	cfg.Table = "orders"
	w := newWriter(t, cfg)
	row := randomOp(rand.New(rand.NewSource(3)), 0).row
	delete(row, "id")
	want := `servicewriter: upsert into ` + ks + `.orders: key column "id" is missing (the key of ` + ks + `.orders is ("tenant", "id"))`
	if err := w.Upsert(ctx, row); err == nil || err.Error() != want {
		t.Errorf("upsert without id: got %v\nwant %s", err, want)
	}
	want = `servicewriter: delete from ` + ks + `.orders: key column "tenant" is missing (the key of ` + ks + `.orders is ("tenant", "id"))`
	if err := w.Delete(ctx, map[string]any{"id": 1}); err == nil || err.Error() != want {
		t.Errorf("delete without tenant: got %v\nwant %s", err, want)
	}
	row["id"] = 1
	row["tags"] = []string{"a"}
	want = `servicewriter: upsert into ` + ks + `.orders: column "tags" is not a column of ` + ks + `.orders`
	if err := w.Upsert(ctx, row); err == nil || err.Error() != want {
		t.Errorf("upsert with an unknown column: got %v\nwant %s", err, want)
	}
	delete(row, "tags")
	row["big"] = "12"
	want = `servicewriter: upsert into ` + ks + `.orders: column "big" (bigint): a value of Go type string cannot be written (give an integer)`
	if err := w.Upsert(ctx, row); err == nil || err.Error() != want {
		t.Errorf("upsert with a string bigint: got %v\nwant %s", err, want)
	}
	// None of them reached the log or the table: the one good write is
	// the topic's only event and the table's only row.
	row["big"] = int64(12)
	if err := w.Upsert(ctx, row); err != nil {
		t.Fatal(err)
	}
	if msgs := testenv.ReadTopic(t, w.Topic(), 1, 30*time.Second); len(msgs) != 1 {
		t.Errorf("the topic has %d events, want the 1 good write", len(msgs))
	}
	if n := countRows(t, s, ks, "orders"); n != 1 {
		t.Errorf("the table has %d rows, want 1", n)
	}
}
