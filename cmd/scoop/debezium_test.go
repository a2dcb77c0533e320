package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// Debezium's JDBC sink connector reading scoop's topics (issue 17): what a
// team with Debezium consumers sees. The connector runs in Kafka Connect
// standalone (the Kafka jars of the stack); its own jars come from Maven
// Central (scripts/deps/debezium-jdbc/pom.xml) into the stack's jar cache.

// dbzTable is the all-types table of the compatibility test: one column per
// type family Debezium's PostgreSQL connector gives its own semantic type.
const dbzTable = `CREATE TABLE %s (
  id            int8 PRIMARY KEY,
  c_bool        bool,
  c_int2        int2,
  c_int4        int4,
  c_int8        int8,
  c_float4      float4,
  c_float8      float8,
  c_numeric     numeric(30,10),
  c_numeric_any numeric,
  c_text        text,
  c_varchar     varchar(20),
  c_char        char(5),
  c_bytea       bytea,
  c_date        date,
  c_time        time,
  c_timetz      timetz,
  c_timestamp   timestamp,
  c_timestamptz timestamptz,
  c_interval    interval,
  c_json        json,
  c_jsonb       jsonb,
  c_uuid        uuid,
  c_enum        dbz_mood,
  c_int_arr     int4[],
  c_text_arr    text[],
  c_inet        inet,
  c_null        text
)`

const dbzEnum = `DO $$ BEGIN
  CREATE TYPE dbz_mood AS ENUM ('sad', 'ok', 'happy');
EXCEPTION WHEN duplicate_object THEN NULL; END $$`

// dbzRows inserts rows lo..hi; every value depends on the id (and on tag, so
// that a second load differs from the first), NULLs included.
func dbzRows(table string, lo, hi int, tag string) string {
	return fmt.Sprintf(`INSERT INTO %[1]s SELECT g, g %% 2 = 0, (g %% 32000)::int2, g * 1000, g * 100000000000,
		g / 4.0, g / 3.0, (g * 1234567.891)::numeric(30,10), (g::numeric / 7)::numeric(40,25),
		%[4]s || E' text\n"quoted" \\ ' || g, 'v' || g, 'c' || (g %% 10), decode(lpad(to_hex(g), 8, '0'), 'hex'),
		date '2024-02-29' + g * 37 - 40000, time '00:00:01.000001' + g * interval '17 minutes 3.25 seconds',
		CASE WHEN g %% 3 = 0 THEN '12:00:00+05:30'::timetz WHEN g %% 3 = 1 THEN '23:59:59.5-03'::timetz ELSE '00:00:00+00'::timetz END,
		timestamp '2024-02-29 12:34:56.789' + g * interval '1 day 1.5 seconds' - interval '30000 days',
		timestamptz '2024-02-29 12:34:56.789+02' - g * interval '1 hour 0.000001 seconds',
		CASE WHEN g %% 4 = 0 THEN NULL ELSE g * interval '1 year 2 mons 3 days 04:05:06.5' - interval '100 days' END,
		json_build_object('g', g, 'tag', %[4]s, 'arr', json_build_array(true, null, g / 2.0)),
		jsonb_build_object('g', g, 'nested', jsonb_build_object('s', 'x"y'), 'tag', %[4]s),
		md5(%[4]s || g)::uuid, (ARRAY['sad', 'ok', 'happy'])[1 + g %% 3]::dbz_mood,
		CASE WHEN g %% 5 = 0 THEN NULL ELSE ARRAY[g, NULL, -g] END, ARRAY['a b', 'c"d' || g, NULL],
		('10.0.' || (g %% 250) || '.' || (g %% 200) || '/24')::inet, CASE WHEN g %% 2 = 0 THEN 'x' END
		FROM generate_series(%[2]d, %[3]d) g`, schema.QuoteIdent(table), lo, hi, quoteLiteral(tag))
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TestDebeziumJDBCSink: scoop's topic of an all-types table (with schemas)
// is applied by Debezium's own JDBC sink into a fresh database: snapshot
// rows, inserts, updates, deletes, a key change and a truncate; after each
// phase the sink's table equals the monolith's, column by column.
func TestDebeziumJDBCSink(t *testing.T) {
	testenv.Require(t)
	plugin := debeziumJars(t)
	mono := testenv.Conn(t, "monolith")
	table := testenv.Name("dbz")
	db := testenv.Name("dbzsink")
	testenv.Exec(t, mono, `CREATE DATABASE `+schema.QuoteIdent(db))
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testenv.PGURL("monolith"))
		if err == nil {
			c.Exec(context.Background(), `DROP DATABASE IF EXISTS `+schema.QuoteIdent(db)+` WITH (FORCE)`)
			c.Close(context.Background())
		}
	})
	sink := testenv.Conn(t, db)
	for _, c := range []*pgx.Conn{mono, sink} {
		testenv.Exec(t, c, dbzEnum)
		testenv.Exec(t, c, fmt.Sprintf(dbzTable, schema.QuoteIdent(table)))
	}
	testenv.Exec(t, testenv.Conn(t, "service"), dbzEnum) // scoop's own sink of the mapping
	// Rows before scoop starts arrive as snapshot reads (op r).
	testenv.Exec(t, mono, dbzRows(table, 1, 40, "first"))

	e := newE2E(t, fmt.Sprintf(`mappings:
  - name: dbz
    source: public.%s
    store: accounts
`, table))
	e.env = append(e.env, "SCOOP_EVENT_SCHEMAS=true")
	d := startProc(t, e.env)
	topic := pipeline.TopicFor(e.prefix, "public", table)
	connect := startConnect(t, plugin, topic, db, table)

	equal := func(what string) {
		t.Helper()
		start := time.Now()
		deadline := start.Add(120 * time.Second)
		for {
			w, g := rowsJSON(t, "monolith", table), rowsJSON(t, db, table)
			if strings.Join(w, "\n") == strings.Join(g, "\n") {
				t.Logf("%s: %d rows equal after %s", what, len(w), time.Since(start).Round(time.Millisecond))
				return
			}
			failed := strings.Contains(connect.logs(), "Task threw an uncaught and unrecoverable exception")
			if failed || time.Now().After(deadline) {
				t.Fatalf("%s: Debezium's JDBC sink did not reach the monolith's rows: %d rows in the monolith, %d in its database\n%s\nKafka Connect log tail:\n%s\nscoop log tail:\n%s",
					what, len(w), len(g), columnDiff(w, g), tail(connect.logs(), 6000), tail(d.logs(), 2000))
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	equal("snapshot")

	q := schema.QuoteIdent(table)
	testenv.Exec(t, mono, dbzRows(table, 41, 70, "second"))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET c_text = c_text || ' updated', c_jsonb = c_jsonb || '{"u": 1}', c_date = c_date + 1,
		c_timestamp = c_timestamp + interval '1 microsecond', c_numeric = -c_numeric, c_int_arr = NULL WHERE id %% 3 = 0`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id %% 7 = 0`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET id = 1000 + id WHERE id IN (5, 46)`, q)) // key changes
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET c_bool = NULL, c_uuid = NULL, c_enum = NULL, c_bytea = NULL, c_interval = NULL WHERE id = 1`, q))
	equal("inserts, updates, deletes, key changes")

	// A truncate is written to every partition; let each copy arrive before
	// the table is written again (docs/events.md, Truncate).
	testenv.Exec(t, mono, fmt.Sprintf(`TRUNCATE %s`, q))
	equal("truncate")
	connect.drained(t, topic)
	testenv.Exec(t, mono, dbzRows(table, 1, 25, "after truncate"))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET c_float8 = -c_float8, c_timetz = '01:02:03.456789+01' WHERE id %% 2 = 0`, q))
	equal("after the truncate")

	// A second connector let Debezium's JDBC sink create its table itself
	// (schema.evolution=basic), as a new consumer would: each column gets
	// the type Debezium's own events of the column give it, and its values.
	autoTable := table + "_auto"
	// numeric and interval: text, as for Debezium's decimal.handling.mode
	// and interval.handling.mode string.
	wantTypes := map[string]string{
		"id": "bigint", "c_bool": "boolean", "c_int2": "smallint", "c_int4": "integer", "c_int8": "bigint",
		"c_float4": "real", "c_float8": "double precision", "c_numeric": "text", "c_numeric_any": "text",
		"c_text": "text", "c_varchar": "text", "c_char": "text", "c_bytea": "bytea",
		"c_date": "date", "c_time": "time(6) without time zone", "c_timetz": "time(6) with time zone",
		"c_timestamp": "timestamp(6) without time zone", "c_timestamptz": "timestamp(6) with time zone",
		"c_interval": "text", "c_json": "json", "c_jsonb": "json", "c_uuid": "uuid", "c_enum": "text",
		"c_int_arr": "integer[]", "c_text_arr": "text[]", "c_inet": "text", "c_null": "text",
	}
	autoTypes := func() map[string]string {
		got := map[string]string{}
		rows, err := sink.Query(context.Background(), `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, schema.QuoteIdent(autoTable))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var n, typ string
			rows.Scan(&n, &typ)
			got[n] = typ
		}
		return got
	}
	// The monolith's values cast to the created types; c_char and
	// c_interval are left out (a cast of char drops its padding, one of
	// interval writes PostgreSQL's style, not Debezium's ISO form; both are
	// compared above).
	var monoCols, autoCols []string
	for _, n := range sortedKeys(wantTypes) {
		if n == "c_char" || n == "c_interval" {
			continue
		}
		monoCols = append(monoCols, fmt.Sprintf("CAST(%s AS %s) AS %[1]s", schema.QuoteIdent(n), wantTypes[n]))
		autoCols = append(autoCols, schema.QuoteIdent(n))
	}
	castRows := func(db, from string, cols []string) func() []string {
		return func() []string {
			return rowsJSONOf(t, db, fmt.Sprintf(`SELECT %s FROM %s`, strings.Join(cols, ", "), schema.QuoteIdent(from)))
		}
	}
	start := time.Now()
	for {
		w, g := castRows("monolith", table, monoCols)(), castRows(db, autoTable, autoCols)()
		types := autoTypes()
		if fmt.Sprint(types) == fmt.Sprint(wantTypes) && strings.Join(w, "\n") == strings.Join(g, "\n") {
			t.Logf("table created by the sink: types and %d rows as expected after %s", len(w), time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("table created by Debezium's JDBC sink: column types %v, want %v\n%s\nKafka Connect log tail:\n%s", types, wantTypes, columnDiff(w, g), tail(connect.logs(), 4000))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// columnDiff names, for the first rows (by id) that differ between the
// monolith and the sink, each column that differs, then the rows only one
// side has.
func columnDiff(want, got []string) string {
	byID := func(rows []string) (map[string]map[string]json.RawMessage, []string) {
		m := map[string]map[string]json.RawMessage{}
		var ids []string
		for _, r := range rows {
			var row map[string]json.RawMessage
			if json.Unmarshal([]byte(r), &row) == nil {
				m[string(row["id"])] = row
				ids = append(ids, string(row["id"]))
			}
		}
		return m, ids
	}
	w, ids := byID(want)
	g, _ := byID(got)
	var b strings.Builder
	n := 0
	for _, id := range ids {
		gr, ok := g[id]
		if !ok {
			fmt.Fprintf(&b, "id %s: only in the monolith\n", id)
		} else {
			for col, v := range w[id] {
				if string(v) != string(gr[col]) {
					fmt.Fprintf(&b, "id %s: %s is %s in the monolith, %s in the sink\n", id, col, v, gr[col])
				}
			}
		}
		if n++; n == 5 {
			break
		}
	}
	for id := range g {
		if _, ok := w[id]; !ok {
			fmt.Fprintf(&b, "id %s: only in the sink\n", id)
		}
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// rowsJSONOf returns the rows of a query as JSON text, sorted.
func rowsJSONOf(t *testing.T, db, query string) []string {
	t.Helper()
	c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
	if err != nil {
		return nil
	}
	defer c.Close(context.Background())
	rows, err := c.Query(context.Background(), `SELECT to_jsonb(q)::text FROM (`+query+`) q`)
	if err != nil {
		return nil
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil
	}
	sort.Strings(out)
	return out
}

// debeziumJars returns the Kafka Connect plugin directory holding Debezium's
// JDBC sink, resolving its jars with Maven into the stack's jar cache when
// the cache lacks them (or the pom changed), as scripts/stack does for Kafka.
// A Maven that cannot fetch them skips the test, saying so.
func debeziumJars(t *testing.T) string {
	t.Helper()
	root := testenv.Root()
	stack := os.Getenv("SCOOP_STACK_DIR")
	if stack == "" {
		stack = filepath.Join(root, ".stack")
	}
	jars := os.Getenv("SCOOP_STACK_JARS")
	if jars == "" {
		jars = filepath.Join(stack, "jars")
	}
	pom := filepath.Join(root, "scripts", "deps", "debezium-jdbc", "pom.xml")
	b, err := os.ReadFile(pom)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	want := hex.EncodeToString(sum[:])
	dir := filepath.Join(jars, "debezium-jdbc")
	if got, _ := os.ReadFile(filepath.Join(dir, ".pom.sha256")); strings.TrimSpace(string(got)) == want {
		return dir
	}
	mvn, err := exec.LookPath("mvn")
	if err != nil {
		t.Skipf("Debezium's JDBC sink is not in %s and Maven is not installed to fetch it (apt-get install maven)", dir)
	}
	tmp := fmt.Sprintf("%s.tmp.%d", dir, os.Getpid())
	os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mvn, "-q", "-B", "-f", pom, "dependency:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory="+tmp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		t.Skipf("Maven could not fetch Debezium's JDBC sink (%s): %v\n%s", pom, err, tail(string(out), 3000))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".pom.sha256"), []byte(want+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// connectProc is a Kafka Connect standalone worker.
type connectProc struct {
	cmd    *exec.Cmd
	groups []string // of its connectors
	mu     sync.Mutex
	out    bytes.Buffer
}

// drained waits until every connector's group has committed the end of
// every partition of topic (so each copy of a truncate was applied).
func (c *connectProc) drained(t *testing.T, topic string) {
	t.Helper()
	admin, err := kafka.NewAdmin([]string{testenv.Broker()}, kafka.Security{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ranges, err := admin.Ranges(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		var parts []int
		for _, r := range ranges {
			parts = append(parts, r.Partition)
		}
		behind := ""
		for _, g := range c.groups {
			committed, err := admin.Committed(ctx, g, topic, parts)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range ranges {
				if committed[r.Partition] < r.End {
					behind += fmt.Sprintf(" %s: partition %d at %d of %d;", g, r.Partition, committed[r.Partition], r.End)
				}
			}
		}
		if behind == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Kafka Connect did not commit the end of %s:%s\n%s", topic, behind, tail(c.logs(), 4000))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (c *connectProc) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *connectProc) logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// startConnect runs Kafka Connect standalone with Debezium's JDBC sink
// applying topic into table of database db (upserts by the record's key,
// deletes, truncates; the table exists already, as the monolith's).
func startConnect(t *testing.T, plugin, topic, db, table string) *connectProc {
	t.Helper()
	kafkaJars := filepath.Join(filepath.Dir(plugin), "kafka")
	if _, err := os.Stat(filepath.Join(kafkaJars, ".pom.sha256")); err != nil {
		t.Fatalf("the stack's Kafka jars are not in %s (scripts/stack up kafka fetches them): %v", kafkaJars, err)
	}
	dir := t.TempDir()
	// The plugin's own Jackson would meet the Jackson modules of Kafka's
	// classpath (Hibernate registers every module it finds: "BlackbirdModule
	// not a subtype"); without its copy it uses Kafka's.
	plugins := filepath.Join(dir, "plugins", "debezium-jdbc")
	os.MkdirAll(plugins, 0o755)
	jars, err := filepath.Glob(filepath.Join(plugin, "*.jar"))
	if err != nil || len(jars) == 0 {
		t.Fatalf("no jars in %s: %v", plugin, err)
	}
	for _, j := range jars {
		if strings.HasPrefix(filepath.Base(j), "jackson-") {
			continue
		}
		if err := os.Symlink(j, filepath.Join(plugins, filepath.Base(j))); err != nil {
			t.Fatal(err)
		}
	}
	plugins = filepath.Dir(plugins)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	restPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	write := func(name string, lines ...string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	worker := write("worker.properties",
		"bootstrap.servers="+testenv.Broker(),
		"key.converter=org.apache.kafka.connect.json.JsonConverter",
		"value.converter=org.apache.kafka.connect.json.JsonConverter",
		"key.converter.schemas.enable=true",
		"value.converter.schemas.enable=true",
		"offset.storage.file.filename="+filepath.Join(dir, "offsets"),
		"offset.flush.interval.ms=1000",
		"plugin.path="+plugins,
		fmt.Sprintf("listeners=http://127.0.0.1:%d", restPort),
		"consumer.auto.offset.reset=earliest",
		"consumer.max.poll.records=200",
	)
	autoName, sinkName := testenv.Name("dbzauto"), testenv.Name("dbzsink")
	auto := write("jdbc-sink-auto.properties",
		"name="+autoName,
		"connector.class=io.debezium.connector.jdbc.JdbcSinkConnector",
		"tasks.max=1",
		"topics="+topic,
		fmt.Sprintf("connection.url=jdbc:postgresql://127.0.0.1:%s/%s?stringtype=unspecified", testenv.PGPort, db),
		"connection.username=postgres",
		"connection.password=",
		"insert.mode=upsert",
		"delete.enabled=true",
		"truncate.enabled=true",
		"primary.key.mode=record_key",
		"schema.evolution=basic",
		"collection.name.format="+table+"_auto",
		"use.time.zone=UTC",
	)
	connector := write("jdbc-sink.properties",
		"name="+sinkName,
		"connector.class=io.debezium.connector.jdbc.JdbcSinkConnector",
		"tasks.max=1",
		"topics="+topic,
		// stringtype=unspecified: numeric columns take the string form of
		// decimal.handling.mode=string (docs/events.md).
		fmt.Sprintf("connection.url=jdbc:postgresql://127.0.0.1:%s/%s?stringtype=unspecified", testenv.PGPort, db),
		"connection.username=postgres",
		"connection.password=",
		"insert.mode=upsert",
		"delete.enabled=true",
		"truncate.enabled=true",
		"primary.key.mode=record_key",
		"schema.evolution=none",
		"collection.name.format="+table,
		"use.time.zone=UTC",
	)
	logCfg := write("log4j2.properties",
		"status=warn",
		"appender.out.type=Console",
		"appender.out.name=out",
		"appender.out.layout.type=PatternLayout",
		"appender.out.layout.pattern=%d{HH:mm:ss.SSS} %p %c{1} %m%n",
		"rootLogger.level=INFO",
		"rootLogger.appenderRef.out.ref=out",
		"logger.reflections.name=org.reflections",
		"logger.reflections.level=ERROR",
	)
	java := os.Getenv("SCOOP_JAVA")
	if java == "" {
		java = "java"
	}
	c := &connectProc{groups: []string{"connect-" + sinkName, "connect-" + autoName}}
	c.cmd = exec.Command(java, "-Xmx512m", "-XX:+UseSerialGC", "-Dlog4j2.configurationFile="+logCfg,
		"-cp", filepath.Join(kafkaJars, "*"),
		"org.apache.kafka.connect.cli.ConnectStandalone", worker, connector, auto)
	c.cmd.Stdout, c.cmd.Stderr = c, c
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start Kafka Connect: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		c.cmd.Wait()
	})
	return c
}
