package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/inf.v0"

	"github.com/scoop-cdc/scoop/connectors/cassandra/servicewriter"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// cassandraRenamed reads a Cassandra copy of the orders table whose note is
// called remark, as id|amount|remark ('-' for NULL), sorted.
func cassandraRenamed(t *testing.T, keyspace, table string) func() []string {
	session := lazyCassandra(t, keyspace)
	return func() []string {
		s := session()
		if s == nil {
			return []string{"error: no Cassandra session"}
		}
		iter := s.Query(fmt.Sprintf(`SELECT id, amount, remark FROM %s`, schema.QuoteIdent(table))).Iter()
		var out []string
		var id int
		var amount *inf.Dec
		var remark *string // MapScan would give "" for NULL
		for iter.Scan(&id, &amount, &remark) {
			r := "-"
			if remark != nil {
				r = *remark
			}
			out = append(out, fmt.Sprintf("%d|%v|%s", id, amount, r))
		}
		if err := iter.Close(); err != nil {
			return []string{"error: " + err.Error()}
		}
		sort.Strings(out)
		return out
	}
}

// svcRow is the test's model of one row: what the service last wrote (or
// the monolith's snapshot row), and whether the monolith row still holds
// the excluded column's value from before (a row the service created has
// NULL there).
type svcRow struct {
	amount, remark string // remark "-" is NULL
	secret         string // "-" is NULL
}

// TestReverseCassandraRoundTrip: a Cassandra service writes through
// servicewriter (seeded random upserts and deletes over 50 keys, an update
// of a row that came from the monolith, a delete of another, and a write
// whose own Cassandra write failed); the monolith ends equal to the
// Cassandra table with the rename reversed and the excluded column left
// alone; the monolith's writes still reach Cassandra; the monolith's events
// caused by the reverse apply carry scoop.origin = reverse:<mapping> and
// are not applied into Cassandra again (each service-written row keeps the
// servicewriter's timestamp as its WRITETIME).
func TestReverseCassandraRoundTrip(t *testing.T) {
	const mapping = "rc"
	table := createTable(t, 20)
	e := newE2E(t, fmt.Sprintf(`mappings:
  - name: %s
    source: public.%s
    store: orders
    direction: both
    columns: {rename: {note: remark}, exclude: [secret]}
`, mapping, table))
	d := startProc(t, e.env)
	monoRows := query(t, "monolith", fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(note, '-') FROM %s`, schema.QuoteIdent(table)))
	cassRows := cassandraRenamed(t, e.keyspace, table)
	waitEqual(t, d, "snapshot -> Cassandra", monoRows, cassRows)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(d.logs(), "reverse flow started") {
		if time.Now().After(deadline) {
			t.Fatalf("reverse flow not running:\n%s", tail(d.logs(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	forward := e.prefix + ".public." + table
	seen := map[[2]int64]bool{}
	for _, m := range testenv.ReadTopic(t, forward, 0, 0) {
		seen[[2]int64{int64(m.Partition), m.Offset}] = true
	}

	// The service's session and writer. The clock strictly increases, so
	// each write's timestamp is the clock's last reading.
	session := cassandraSession(t, e.keyspace)
	var clock int64
	cfg := servicewriter.Config{
		Brokers: []string{testenv.Broker()}, TopicPrefix: e.prefix, Mapping: mapping,
		Session: session, Keyspace: e.keyspace, Table: table,
		Clock: func() time.Time {
			us := time.Now().UnixMicro()
			if us <= clock {
				us = clock + 1
			}
			clock = us
			return time.UnixMicro(us)
		},
	}
	ctx := context.Background()
	w, err := servicewriter.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.Close(cctx)
	})

	model := map[int]svcRow{}
	for id := 1; id <= 20; id++ {
		model[id] = svcRow{amount: fmt.Sprintf("%d.00", id), remark: fmt.Sprintf("n%d", id), secret: "s"}
	}
	written := map[int]int64{} // key -> timestamp of the service's last upsert
	writes := 0
	upsert := func(w *servicewriter.Writer, id int, amount, remark string) error {
		row := map[string]any{"id": id, "amount": amount, "remark": remark}
		if remark == "-" {
			row["remark"] = nil
		}
		err := w.Upsert(ctx, row)
		if err != nil && !servicewriter.IsPublished(err) {
			t.Fatalf("upsert %d: %v", id, err)
		}
		writes++
		secret := "-"
		if prev, ok := model[id]; ok {
			secret = prev.secret // the monolith row is updated, not replaced
		}
		model[id] = svcRow{amount: amount, remark: remark, secret: secret}
		written[id] = clock
		return err
	}
	del := func(id int) {
		if err := w.Delete(ctx, map[string]any{"id": id}); err != nil {
			t.Fatalf("delete %d: %v", id, err)
		}
		writes++
		delete(model, id)
		delete(written, id)
	}

	// Seeded random upserts and deletes over keys 1..50, the monolith's 20
	// rows among them; keys 3 and 4 are kept for the writes below.
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	for i := 0; i < 150; i++ {
		id := 1 + rng.Intn(50)
		if id == 3 || id == 4 {
			continue
		}
		switch rng.Intn(4) {
		case 0:
			del(id)
		default:
			remark := fmt.Sprintf("svc %d.%d", id, i)
			if rng.Intn(5) == 0 {
				remark = "-"
			}
			upsert(w, id, fmt.Sprintf("%d.%02d", rng.Intn(10000), rng.Intn(100)), remark)
		}
	}
	// A row that came from the monolith, updated by the service; another
	// deleted by it.
	upsert(w, 3, "33.30", "updated by the service")
	del(4)
	// A write whose own Cassandra write fails (the session is closed after
	// the writer read the table): it is in the event log, so scoop's
	// reverse flow writes it into Cassandra as well as into the monolith.
	lost := cassandraSession(t, e.keyspace)
	lcfg := cfg
	lcfg.Session = lost
	lw, err := servicewriter.New(ctx, lcfg)
	if err != nil {
		t.Fatal(err)
	}
	lost.Close()
	if err := upsert(lw, 60, "60.60", "its own Cassandra write failed"); !servicewriter.IsPublished(err) {
		t.Fatalf("upsert through a closed session returned %v, want an error with IsPublished", err)
	}
	lw.Close(ctx)

	var want []string
	for id, r := range model {
		want = append(want, fmt.Sprintf("%d|%s|%s", id, r.amount, r.remark))
	}
	sort.Strings(want)
	waitEqual(t, d, "service writes -> monolith", func() []string { return want }, monoRows)
	waitEqual(t, d, "service writes -> Cassandra", func() []string { return want }, cassRows)
	waitEqual(t, d, "monolith = Cassandra", monoRows, cassRows)
	var secrets []string
	for id, r := range model {
		secrets = append(secrets, fmt.Sprintf("%d|%s", id, r.secret))
	}
	sort.Strings(secrets)
	got := query(t, "monolith", fmt.Sprintf(`SELECT id || '|' || coalesce(secret, '-') FROM %s`, schema.QuoteIdent(table)))()
	if strings.Join(got, "\n") != strings.Join(secrets, "\n") {
		t.Fatalf("the excluded column in the monolith:\n%s\nwant:\n%s", rowDiff(secrets, got), strings.Join(secrets, "\n"))
	}
	// Each write is one event in the reverse topic.
	rev := pipeline.ReverseTopic(e.prefix, &pipeline.Mapping{Name: mapping})
	var events int
	for _, m := range testenv.ReadTopic(t, rev, writes, 10*time.Second) {
		if m.Value != nil {
			events++
		}
	}
	if events != writes {
		t.Fatalf("%d events in %s, want one per service write (%d)", events, rev, writes)
	}

	// Monolith writes still reach Cassandra: new rows, until they have
	// landed in every partition of the forward topic. The forward sink
	// applies each partition in order, so once they are in Cassandra every
	// echo of the reverse apply has been skipped or applied.
	m := testenv.Conn(t, "monolith")
	parts := map[int]bool{}
	sentinel := 1000
	for len(parts) < 3 {
		if sentinel >= 1030 {
			t.Fatalf("monolith rows 1000..%d reached only partitions %v of %s", sentinel-1, parts, forward)
		}
		testenv.Exec(t, m, fmt.Sprintf(`INSERT INTO %s VALUES (%d, %d.25, 'from the monolith', 'm')`, schema.QuoteIdent(table), sentinel, sentinel))
		want = append(want, fmt.Sprintf("%d|%d.25|from the monolith", sentinel, sentinel))
		sentinel++
		sort.Strings(want)
		waitEqual(t, d, "monolith write -> Cassandra", func() []string { return want }, cassRows)
		parts = map[int]bool{}
		for _, msg := range testenv.ReadTopic(t, forward, 0, 0) {
			if !seen[[2]int64{int64(msg.Partition), msg.Offset}] && msg.Value != nil && keyID(t, msg.Key) >= 1000 {
				parts[msg.Partition] = true
			}
		}
	}
	testenv.Exec(t, m, fmt.Sprintf(`UPDATE %s SET note = 'monolith edit' WHERE id = 3`, schema.QuoteIdent(table)))
	r3 := model[3]
	r3.remark = "monolith edit"
	model[3] = r3
	delete(written, 3)
	want = want[:0]
	for id, r := range model {
		want = append(want, fmt.Sprintf("%d|%s|%s", id, r.amount, r.remark))
	}
	for id := 1000; id < sentinel; id++ {
		want = append(want, fmt.Sprintf("%d|%d.25|from the monolith", id, id))
	}
	sort.Strings(want)
	waitEqual(t, d, "monolith update of a service-written row -> Cassandra", func() []string { return want }, cassRows)
	waitEqual(t, d, "monolith = Cassandra at the end", monoRows, cassRows)

	// The monolith's events that the reverse apply caused are tagged with
	// the reverse flow; the monolith's own writes are not.
	var tagged, untagged int
	for _, msg := range testenv.ReadTopic(t, forward, 0, 0) {
		if msg.Value == nil || seen[[2]int64{int64(msg.Partition), msg.Offset}] {
			continue
		}
		origin := ""
		for _, h := range msg.Headers {
			if h.Key == pipeline.OriginHeader {
				origin = string(h.Value)
			}
		}
		id := keyID(t, msg.Key)
		own := id >= 1000 || id == 3 && strings.Contains(string(msg.Value), "monolith edit")
		switch {
		case own && origin != "":
			t.Errorf("the monolith's own write %s at %d/%d carries %s = %q", msg.Key, msg.Partition, msg.Offset, pipeline.OriginHeader, origin)
		case own:
			untagged++
		case origin != pipeline.ReverseOrigin(&pipeline.Mapping{Name: mapping}):
			t.Errorf("event %s at %d/%d, written by the reverse apply, has %s = %q, want %q", msg.Key, msg.Partition, msg.Offset, pipeline.OriginHeader, origin, pipeline.ReverseOrigin(&pipeline.Mapping{Name: mapping}))
		default:
			tagged++
		}
	}
	if own := sentinel - 1000 + 1; tagged == 0 || tagged > writes || untagged != own {
		t.Errorf("the monolith's topic got %d events tagged by the reverse flow (want 1..%d) and %d of its own writes (want %d)", tagged, writes, untagged, own)
	}

	// Not applied into Cassandra again: each row the service wrote last
	// keeps the servicewriter's timestamp (an echo would write it again at
	// the monolith's later commit time).
	iter := session.Query(fmt.Sprintf(`SELECT id, WRITETIME(amount) FROM %s`, schema.QuoteIdent(table))).Iter()
	var key int
	var wt int64
	checked := 0
	for iter.Scan(&key, &wt) {
		ts, ok := written[key]
		if !ok {
			continue
		}
		checked++
		if wt != ts {
			t.Errorf("row %d: WRITETIME %d, want the servicewriter's %d (%+dµs)", key, wt, ts, wt-ts)
		}
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d service writes; %d monolith events tagged by the reverse flow; %d of the monolith's own; %d WRITETIMEs checked", writes, tagged, untagged, checked)
	if checked != len(written) {
		t.Errorf("checked the WRITETIME of %d rows, want %d", checked, len(written))
	}
}

// keyID is the id in a forward event's key ({"id": 42}).
func keyID(t *testing.T, key []byte) int {
	var k struct{ ID int }
	if err := json.Unmarshal(key, &k); err != nil {
		t.Fatalf("event key %q: %v", key, err)
	}
	return k.ID
}
