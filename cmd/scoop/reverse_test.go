package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// query returns the rows of sql in db, one text column each, sorted.
func query(t *testing.T, db, sql string) func() []string {
	return func() []string {
		c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		defer c.Close(context.Background())
		rows, err := c.Query(context.Background(), sql)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		sort.Strings(out)
		return out
	}
}

// waitStreaming waits until the instance's reverse flows run as well.
func waitReverse(t *testing.T, d *proc, mappings int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(d.logs(), "reverse flow started") < mappings || !strings.Contains(d.logs(), "created replication slot (no snapshot)") && !strings.Contains(d.logs(), "reverse_source") {
		if time.Now().After(deadline) {
			t.Fatalf("reverse flows not running:\n%s", tail(d.logs(), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReversePostgresRoundTrip: with direction both, the service's inserts,
// updates and deletes reach the monolith with the column renamed back and
// the excluded column left alone; the monolith's writes still reach the
// service; nothing that scoop applied is captured back.
func TestReversePostgresRoundTrip(t *testing.T) {
	table := createTable(t, 20)
	svcTable := table + "_svc"
	e := newE2E(t, fmt.Sprintf(`mappings:
  - name: rt
    source: public.%s
    store: accounts
    target: %s
    direction: both
    columns: {rename: {note: remark}, exclude: [secret], types: {amount: text}}
`, table, svcTable))
	d := startProc(t, e.env)
	mono := fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(note, '') FROM %s`, schema.QuoteIdent(table))
	svc := fmt.Sprintf(`SELECT id || '|' || amount::numeric(12,2)::text || '|' || coalesce(remark, '') FROM %s`, schema.QuoteIdent(svcTable))
	waitEqual(t, d, "snapshot -> service", query(t, "monolith", mono), query(t, "service", svc))
	waitReverse(t, d, 1)

	s := testenv.Conn(t, "service")
	testenv.Exec(t, s, fmt.Sprintf(`INSERT INTO %s (id, amount, remark) VALUES (1000, '5.50', 'from the service')`, schema.QuoteIdent(svcTable)))
	testenv.Exec(t, s, fmt.Sprintf(`UPDATE %s SET remark = 'edited', amount = '7.25' WHERE id = 1`, schema.QuoteIdent(svcTable)))
	testenv.Exec(t, s, fmt.Sprintf(`DELETE FROM %s WHERE id = 2`, schema.QuoteIdent(svcTable)))
	m := testenv.Conn(t, "monolith")
	testenv.Exec(t, m, fmt.Sprintf(`UPDATE %s SET note = 'from the monolith' WHERE id = 3`, schema.QuoteIdent(table)))
	waitEqual(t, d, "both sides", query(t, "monolith", mono), query(t, "service", svc))
	got := query(t, "monolith", fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(note, '-') || '|' || coalesce(secret, '-') FROM %s WHERE id IN (1, 2, 3, 1000)`, schema.QuoteIdent(table)))()
	want := []string{"1000|5.50|from the service|-", "1|7.25|edited|s", "3|3.00|from the monolith|s"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("monolith rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The reverse topic holds the service's three writes and nothing else:
	// the forward sink's write of row 3 was not captured back.
	rev := pipeline.ReverseTopic(e.prefix, &pipeline.Mapping{Name: "rt"})
	var values int
	for _, msg := range testenv.ReadTopic(t, rev, 3, 10*time.Second) {
		if msg.Value != nil {
			values++
		}
	}
	if values != 3 {
		t.Fatalf("%d events in %s, want the service's 3", values, rev)
	}
}

// TestReverseNoEcho: one monolith table, two services with direction both.
// A write in service A reaches the monolith and service B, and nothing comes
// back to A; counted in Kafka: one event in A's reverse topic, one in the
// monolith's topic (tagged with A's reverse flow), none in B's.
func TestReverseNoEcho(t *testing.T) {
	table := createTable(t, 5)
	a, b := table+"_a", table+"_b"
	e := newE2E(t, fmt.Sprintf(`mappings:
  - {name: echo-a, source: public.%[1]s, store: accounts, target: %[2]s, direction: both}
  - {name: echo-b, source: public.%[1]s, store: accounts, target: %[3]s, direction: both}
`, table, a, b))
	d := startProc(t, e.env)
	rows := func(tbl string) string {
		return fmt.Sprintf(`SELECT id || '|' || amount::text || '|' || coalesce(note, '') FROM %s`, schema.QuoteIdent(tbl))
	}
	waitEqual(t, d, "snapshot -> A", query(t, "monolith", rows(table)), query(t, "service", rows(a)))
	waitEqual(t, d, "snapshot -> B", query(t, "monolith", rows(table)), query(t, "service", rows(b)))
	waitReverse(t, d, 2)
	topic := e.prefix + ".public." + table
	seen := map[[2]int64]bool{}
	for _, m := range testenv.ReadTopic(t, topic, 0, 0) {
		seen[[2]int64{int64(m.Partition), m.Offset}] = true
	}

	s := testenv.Conn(t, "service")
	testenv.Exec(t, s, fmt.Sprintf(`UPDATE %s SET note = 'written in A' WHERE id = 1`, schema.QuoteIdent(a)))
	waitEqual(t, d, "A's write -> monolith", query(t, "monolith", rows(table)), query(t, "service", rows(a)))
	waitEqual(t, d, "A's write -> B", query(t, "monolith", rows(table)), query(t, "service", rows(b)))
	// Let anything that would echo arrive: a heartbeat of each source
	// after the write has passed through both reverse and forward flows.
	time.Sleep(3 * time.Second)

	count := func(topic string) (n int, origins []string) {
		for _, m := range testenv.ReadTopic(t, topic, 0, 0) {
			if m.Value == nil {
				continue
			}
			n++
			for _, h := range m.Headers {
				if h.Key == pipeline.OriginHeader {
					origins = append(origins, string(h.Value))
				}
			}
		}
		return n, origins
	}
	if n, _ := count(pipeline.ReverseTopic(e.prefix, &pipeline.Mapping{Name: "echo-a"})); n != 1 {
		t.Errorf("A's reverse topic has %d events, want 1", n)
	}
	if n, _ := count(pipeline.ReverseTopic(e.prefix, &pipeline.Mapping{Name: "echo-b"})); n != 0 {
		t.Errorf("B's reverse topic has %d events, want 0 (B's copy of A's write came back)", n)
	}
	var fresh, tagged int
	for _, m := range testenv.ReadTopic(t, topic, 0, 0) {
		if m.Value == nil || seen[[2]int64{int64(m.Partition), m.Offset}] {
			continue
		}
		fresh++
		for _, h := range m.Headers {
			if h.Key == pipeline.OriginHeader && string(h.Value) == "reverse:echo-a" {
				tagged++
			}
		}
	}
	if fresh != 1 || tagged != 1 {
		t.Errorf("the monolith's topic got %d events (%d tagged reverse:echo-a), want 1 tagged", fresh, tagged)
	}
}
