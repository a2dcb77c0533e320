package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// metricValue reads one sample of /metrics text (-1: absent).
func metricValue(metrics, sample string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// TestStatusSnapshotProgress: while a large table is copied, `scoop status`
// shows the mapping snapshotting with its percentage of the planner's
// estimate and an ETA (also in /status and per table in /metrics); while
// the copy is applied, the mapping's throughput is above zero and every
// batch lands in the latency histogram; a poison event counts as a
// dead_letter error of its mapping only.
func TestStatusSnapshotProgress(t *testing.T) {
	// One-row chunks make the copy take seconds (a query per row).
	const rows = 30000
	mono := testenv.Conn(t, "monolith")
	big, poison := testenv.Name("snap"), testenv.Name("poison")
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, pad text)`, schema.QuoteIdent(big)))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, repeat('x', 10) FROM generate_series(1, %d) g`, schema.QuoteIdent(big), rows))
	testenv.Exec(t, mono, fmt.Sprintf(`ANALYZE %s`, schema.QuoteIdent(big)))
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text, at timestamptz)`, schema.QuoteIdent(poison)))
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: snap\n    source: public.%s\n    store: accounts\n  - name: poison\n    source: public.%s\n    store: orders\n", big, poison))
	addr := freeAddr(t)
	env := setEnv(e.env, "SCOOP_ADMIN_ADDR", addr)
	env = append(env, "SCOOP_MONITOR_INTERVAL=100ms", "SCOOP_SNAPSHOT_CHUNK_ROWS=1", "SCOOP_SNAPSHOT_WORKERS=1", "SCOOP_BUFFER_MB=1", "SCOOP_SINK_BATCH=200")
	d := startProc(t, env)
	base := "http://" + addr

	row := regexp.MustCompile(`(?m)^snap +snapshotting (\d+)% of ~` + strconv.Itoa(rows) + ` rows ETA (\S+) +\d+\.\ds +\S+ +\d+\.\d/s +\d+ +0 +\? +accounts +public\.` + big + ` *$`)
	var seen, seenJSON string
	waitFor(t, d, "snap snapshotting with a percentage and an ETA", 120*time.Second, func() (bool, string) {
		// The table is printed from the document as scoop status does;
		// one request a round catches the copy while it runs.
		c, body := get(t, base+"/status", "")
		if c != 200 {
			return false, body
		}
		var doc statusDoc
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			return false, err.Error()
		}
		var out strings.Builder
		if err := printStatus(&out, &doc); err != nil {
			return false, err.Error()
		}
		table := out.String()
		m := row.FindStringSubmatch(table)
		if m == nil {
			return false, table
		}
		pct, _ := strconv.Atoi(m[1])
		seen, seenJSON = table, body
		return pct > 0 && pct < 100, table
	})
	t.Logf("scoop status during the snapshot:\n%s", seen)
	var doc struct {
		Mappings map[string]struct {
			State    string
			Snapshot *struct {
				Rows       int64    `json:"rows"`
				Estimated  int64    `json:"estimated_rows"`
				Percent    *float64 `json:"percent"`
				ETASeconds *float64 `json:"eta_seconds"`
			}
		}
	}
	if err := json.Unmarshal([]byte(seenJSON), &doc); err != nil {
		t.Fatal(err)
	}
	if s := doc.Mappings["snap"]; s.State != "snapshotting" || s.Snapshot == nil || s.Snapshot.Estimated != rows || s.Snapshot.Percent == nil || s.Snapshot.Rows <= 0 || s.Snapshot.ETASeconds == nil {
		t.Errorf("/status snapshot of snap: %+v", s.Snapshot)
	}
	// The copy is applied: the throughput shows while it flows.
	waitFor(t, d, "snap throughput above zero", 120*time.Second, func() (bool, string) {
		_, metrics := get(t, base+"/metrics", "")
		v := metricValue(metrics, `scoop_sink_throughput{mapping="snap"}`)
		return v > 0, fmt.Sprint(v)
	})
	waitEqual(t, d, "snap", func() []string { return []string{strconv.Itoa(rows)} }, query(t, "service", fmt.Sprintf(`SELECT count(*)::text FROM %s`, schema.QuoteIdent(big))))

	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (1, 1, 'ok', now()), (2, 2, 'poison', 'infinity'), (3, 3, 'ok', now())`, schema.QuoteIdent(poison)))
	waitEqual(t, d, "good rows", func() []string { return []string{"1|1.00|ok", "3|3.00|ok"} }, cassandraRows(t, e.keyspace, poison))
	tableName := "public." + big
	waitFor(t, d, "metrics after the snapshot and the poison row", 30*time.Second, func() (bool, string) {
		_, metrics := get(t, base+"/metrics", "")
		want := map[string]func(float64) bool{
			`scoop_source_snapshot_table_rows{table="` + tableName + `"}`:           func(v float64) bool { return v == rows },
			`scoop_source_snapshot_table_estimated_rows{table="` + tableName + `"}`: func(v float64) bool { return v == rows },
			`scoop_source_snapshot_table_done{table="` + tableName + `"}`:           func(v float64) bool { return v == 1 },
			`scoop_sink_batch_seconds_count{mapping="snap"}`:                        func(v float64) bool { return v >= rows/200 },
			`scoop_sink_batch_seconds_count{mapping="poison"}`:                      func(v float64) bool { return v > 0 },
			`scoop_sink_errors_total{kind="dead_letter",mapping="poison"}`:          func(v float64) bool { return v == 1 },
			`scoop_sink_errors_total{kind="dead_letter",mapping="snap"}`:            func(v float64) bool { return v == 0 },
			`scoop_sink_errors_total{kind="store_unavailable",mapping="snap"}`:      func(v float64) bool { return v == 0 },
		}
		var bad []string
		for sample, ok := range want {
			if v := metricValue(metrics, sample); !ok(v) {
				bad = append(bad, fmt.Sprintf("%s = %v", sample, v))
			}
		}
		return len(bad) == 0, strings.Join(bad, "; ")
	})
	table := status(t, addr)
	if !regexp.MustCompile(`(?m)^snap +streaming +\d+\.\ds +\d+ +\d+\.\d/s +` + strconv.Itoa(rows) + ` +0 +\? +accounts `).MatchString(table) {
		t.Errorf("scoop status after the snapshot:\n%s", table)
	}
}

// TestStatusReverseRows: a mapping with direction both shows a second row,
// <mapping>:reverse, for its reverse flow (the service's table into the
// monolith), with its state, lag, throughput and applied count; after a
// flip both rows name the service as owner.
func TestStatusReverseRows(t *testing.T) {
	table := createTable(t, 5)
	svc := table + "_svc"
	e := newE2E(t, fmt.Sprintf("mappings:\n  - {name: rv, source: public.%s, store: accounts, target: %s, direction: both, conflict: last-writer-wins}\n", table, svc))
	addr := freeAddr(t)
	env := setEnv(e.env, "SCOOP_ADMIN_ADDR", addr)
	env = append(env, "SCOOP_MONITOR_INTERVAL=200ms")
	d := startProc(t, env)
	// scoop status reads the owners from the monolith's registry.
	t.Setenv("SCOOP_SOURCE_URL", testenv.PGURL("monolith"))
	t.Setenv("SCOOP_SLOT", e.slot)
	mono := fmt.Sprintf(`SELECT id || '|' || coalesce(note, '') FROM %s`, schema.QuoteIdent(table))
	service := fmt.Sprintf(`SELECT id || '|' || coalesce(note, '') FROM %s`, schema.QuoteIdent(svc))
	waitEqual(t, d, "snapshot -> service", query(t, "monolith", mono), query(t, "service", service))
	waitReverse(t, d, 1)
	// The service's writes are captured once the reverse slot streams.
	waitFor(t, d, "the reverse source streams", 60*time.Second, func() (bool, string) {
		return strings.Contains(d.logs(), "msg=streaming reverse_source=accounts"), ""
	})
	s := testenv.Conn(t, "service")
	testenv.Exec(t, s, fmt.Sprintf(`INSERT INTO %s (id, amount, note) SELECT g, g, 'svc' FROM generate_series(100, 102) g`, schema.QuoteIdent(svc)))
	waitEqual(t, d, "service -> monolith", query(t, "service", service), query(t, "monolith", mono))

	fwd := regexp.MustCompile(`(?m)^rv +streaming +\d+\.\ds +\d+ +\d+\.\d/s +5 +0 +(\S+) +accounts +public\.` + table + ` *$`)
	rev := regexp.MustCompile(`(?m)^rv:reverse +streaming +\d+\.\ds +0 +\d+\.\d/s +3 +0 +(\S+) +monolith +accounts:` + svc + ` *$`)
	check := func(owner string) string {
		var table string
		waitFor(t, d, "status rows of rv and rv:reverse owned by "+owner, 60*time.Second, func() (bool, string) {
			table = status(t, addr)
			f, r := fwd.FindStringSubmatch(table), rev.FindStringSubmatch(table)
			return f != nil && r != nil && f[1] == owner && r[1] == owner, table
		})
		return table
	}
	table1 := check("monolith")
	t.Logf("scoop status:\n%s", table1)
	if strings.Contains(table1, "owner of rv") {
		t.Errorf("an owner line before any flip:\n%s", table1)
	}
	_, metrics := get(t, "http://"+addr+"/metrics", "")
	for _, sample := range []string{`scoop_sink_state{mapping="rv:reverse",state="streaming"}`, `scoop_sink_lag_events{mapping="rv:reverse"}`} {
		if v := metricValue(metrics, sample); v < 0 {
			t.Errorf("metrics lack %s", sample)
		}
	}
	if v := metricValue(metrics, `scoop_sink_batch_seconds_count{mapping="rv:reverse"}`); v <= 0 {
		t.Errorf("scoop_sink_batch_seconds_count{mapping=\"rv:reverse\"} = %v", v)
	}

	if out, err := e.cli(t, "mappings", "flip", "rv", "--timeout", "60s"); err != nil {
		t.Fatalf("flip: %v\n%s\n%s", err, out, tail(d.logs(), 3000))
	}
	table2 := check("service")
	t.Logf("scoop status after the flip:\n%s", table2)
	if !strings.Contains(table2, "owner of rv: service (flipped at ") || strings.Contains(table2, "owner of rv:reverse") {
		t.Errorf("owner lines after the flip:\n%s", table2)
	}
	if _, err := e.cli(t, "mappings", "flip", "rv", "--back", "--timeout", "60s"); err != nil {
		t.Fatalf("flip back: %v", err)
	}
}

// TestReadinessSeesKafkaDown: when Kafka goes away, /readyz turns red
// naming it, the metrics and `scoop status` say so, and everything turns
// green again when it is back. The daemon uses a private broker of this
// test, killed and started again, so the stack's shared broker stays up for
// the other tests.
func TestReadinessSeesKafkaDown(t *testing.T) {
	table := createTable(t, 3)
	k := testenv.StartKafka1(t)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: kd\n    source: public.%s\n    store: accounts\n", table))
	addr := freeAddr(t)
	env := setEnv(e.env, "SCOOP_ADMIN_ADDR", addr)
	env = setEnv(env, "SCOOP_KAFKA_BROKERS", k.Addr())
	env = append(env, "SCOOP_MONITOR_INTERVAL=200ms")
	d := startProc(t, env)
	waitEqual(t, d, "kd", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	base := "http://" + addr
	readiness(t, d, base, 200, "ready\n", 60*time.Second)

	k.Kill(t)
	want := "kafka unreachable: ask Kafka (" + k.Addr() + ") for its API versions: "
	body := readiness(t, d, base, 503, want, 60*time.Second)
	if !strings.HasPrefix(body, "not ready:\n") {
		t.Errorf("readyz body: %q", body)
	}
	t.Logf("/readyz with Kafka down: %s", body)
	if _, metrics := get(t, base+"/metrics", ""); metricValue(metrics, "scoop_kafka_up") != 0 || metricValue(metrics, "scoop_ready") != 0 {
		t.Errorf("metrics while Kafka is down: scoop_kafka_up %v, scoop_ready %v", metricValue(metrics, "scoop_kafka_up"), metricValue(metrics, "scoop_ready"))
	}
	if table := status(t, addr); !strings.Contains(table, "NOT READY:\n") || !strings.Contains(table, "\n  - "+want) {
		t.Errorf("scoop status while Kafka is down:\n%s", table)
	}
	k.Up(t)
	readiness(t, d, base, 200, "ready\n", 120*time.Second)
	mono := testenv.Conn(t, "monolith")
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (100, 1, 'after', 's')`, schema.QuoteIdent(table)))
	waitEqual(t, d, "kd after Kafka is back", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	if !strings.Contains(d.logs(), `msg="not ready" reason="`+want) {
		t.Errorf("the log does not say Kafka went away:\n%s", tail(d.logs(), 3000))
	}
}

// TestReadinessSeesUnreservedWAL: on a private cluster with
// max_slot_wal_keep_size = 16MB, a slot held back (an open transaction pins
// its restart position) while 64 MB of WAL are written gets wal_status
// unreserved: /readyz turns red saying PostgreSQL will remove WAL the slot
// needs, status and metrics show it, and it clears once the slot moves on.
// Held back once more and checkpointed, the slot is lost: scoop stops,
// saying so.
func TestReadinessSeesUnreservedWAL(t *testing.T) {
	pg := testenv.StartPG1(t)
	ctx := context.Background()
	mono, err := pgx.Connect(ctx, pg.URL("monolith"))
	if err != nil {
		t.Fatal(err)
	}
	defer mono.Close(ctx)
	for _, sql := range []string{`ALTER SYSTEM SET max_slot_wal_keep_size = '16MB'`, `SELECT pg_reload_conf()`,
		`CREATE TABLE kept (id int PRIMARY KEY, note text)`, `INSERT INTO kept VALUES (1, 'one')`,
		`CREATE TABLE filler (id int PRIMARY KEY, pad text)`} {
		testenv.Exec(t, mono, sql)
	}
	e := newE2E(t, "mappings:\n  - name: unres\n    source: public.kept\n    store: accounts\n")
	addr := freeAddr(t)
	env := setEnv(e.env, "SCOOP_ADMIN_ADDR", addr)
	env = setEnv(env, "SCOOP_SOURCE_URL", pg.URL("monolith"))
	env = setEnv(env, "SCOOP_STORE_ACCOUNTS_URL", pg.URL("service"))
	env = append(env, "SCOOP_MONITOR_INTERVAL=200ms")
	d := startProc(t, env)
	base := "http://" + addr
	readiness(t, d, base, 200, "ready\n", 60*time.Second)

	holder, err := pgx.Connect(ctx, pg.URL("monolith"))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	testenv.Exec(t, holder, `BEGIN`)
	testenv.Exec(t, holder, `INSERT INTO filler VALUES (0, 'held')`)
	// 64 MB of WAL past the held position: four 16 MB segments.
	for i := 0; i < 4; i++ {
		testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO filler SELECT g, repeat(md5(g::text), 16) FROM generate_series(%d, %d) g`, 1+i*30000, (i+1)*30000))
	}
	want := "slot " + e.slot + ": wal_status is unreserved: PostgreSQL will remove WAL the slot still needs at its next checkpoint (max_slot_wal_keep_size is exceeded); the source must catch up now"
	body := readiness(t, d, base, 503, want, 60*time.Second)
	t.Logf("/readyz: %s", body)
	if _, metrics := get(t, base+"/metrics", ""); metricValue(metrics, `scoop_source_slot_wal_status{status="unreserved"}`) != 1 {
		t.Errorf("metrics lack scoop_source_slot_wal_status{status=\"unreserved\"} 1")
	}
	if table := status(t, addr); !regexp.MustCompile(`(?m)^  retained WAL \d+\.\d MB  wal_status unreserved  `).MatchString(table) || !strings.Contains(table, "  - "+want) {
		t.Errorf("scoop status:\n%s", table)
	}
	testenv.Exec(t, holder, `ROLLBACK`)
	readiness(t, d, base, 200, "ready\n", 120*time.Second)

	// Held back again past the limit, a checkpoint removes the WAL: the
	// slot is lost, and scoop stops at once saying so (it never recreates
	// a slot silently).
	testenv.Exec(t, holder, `BEGIN`)
	testenv.Exec(t, holder, `INSERT INTO filler VALUES (-1, 'held again')`)
	for i := 4; i < 8; i++ {
		testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO filler SELECT g, repeat(md5(g::text), 16) FROM generate_series(%d, %d) g`, 1+i*30000, (i+1)*30000))
	}
	readiness(t, d, base, 503, want, 60*time.Second)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	testenv.Exec(t, mono, `CHECKPOINT`)
	select {
	case err := <-done:
		lost := fmt.Sprintf(`replication slot %q was invalidated (wal_status = lost): the WAL it needed is gone`, e.slot)
		if err == nil || !strings.Contains(d.logs(), lost) {
			t.Fatalf("exit %v; the log lacks %s:\n%s", err, lost, tail(d.logs(), 3000))
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("scoop did not stop on a lost slot\n%s", tail(d.logs(), 3000))
	}
	testenv.Exec(t, holder, `ROLLBACK`)
}
