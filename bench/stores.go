package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"
	kafkago "github.com/segmentio/kafka-go"
	"gopkg.in/inf.v0"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// Every workload table has the same columns; only the wide-row workload
// fills body (large, incompressible text: TOASTed out of line).
const tableColumns = `id bigint PRIMARY KEY, k integer NOT NULL, v integer NOT NULL, name text,
	amount numeric(12,2), created_at timestamptz NOT NULL DEFAULT now(), body text`

func (b *bench) createMonoTable(ctx context.Context, name string) error {
	b.add(&b.monoTables, name)
	_, err := b.mono.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (%s)`, name, tableColumns))
	return err
}

func (b *bench) createSvcTable(ctx context.Context, name, columns string) error {
	b.add(&b.svcTables, name)
	_, err := b.svc.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (%s)`, name, columns))
	return err
}

// insertSQL inserts ids lo..hi as small rows (about 45 bytes of text), or
// wide rows when bodyBytes > 0.
func insertSQL(table string, lo, hi int64, bodyBytes int) string {
	body := "NULL"
	if bodyBytes > 0 {
		body = fmt.Sprintf("(SELECT string_agg(md5(g::text || ':' || i), '') FROM generate_series(1, %d) i)", bodyBytes/32)
	}
	return fmt.Sprintf(`INSERT INTO %s (id, k, v, name, amount, created_at, body)
		SELECT g, g %% 1000, 0, 'user-' || g || '-' || md5(g::text), (g %% 100000) / 100.0, now(), %s
		FROM generate_series(%d, %d) g`, table, body, lo, hi)
}

// fill inserts ids 1..n in statements of step rows.
func (b *bench) fill(ctx context.Context, table string, n, step int) error {
	for lo := 1; lo <= n; lo += step {
		if _, err := b.mono.Exec(ctx, insertSQL(table, int64(lo), int64(min(lo+step-1, n)), 0)); err != nil {
			return err
		}
	}
	return nil
}

// snapshotted reports whether scoop recorded the table's initial snapshot
// for the slot (scoop.source_tables, written once the rows are in Kafka).
func (b *bench) snapshotted(ctx context.Context, slot string) (int64, error) {
	var n int64
	err := b.mono.QueryRow(ctx, `SELECT count(*) FROM scoop.source_tables WHERE slot = $1`, slot).Scan(&n)
	return n, err
}

func (b *bench) partitions() []int {
	p := make([]int, b.cfg.partitions)
	for i := range p {
		p[i] = i
	}
	return p
}

// createTopics creates topics with the partition count scoop uses, so that
// nothing (a metadata lookup with auto-creation) can create them with the
// broker's default of one partition first.
func (b *bench) createTopics(ctx context.Context, topics ...string) error {
	var req kafkago.CreateTopicsRequest
	for _, t := range topics {
		req.Topics = append(req.Topics, kafkago.TopicConfig{Topic: t, NumPartitions: b.cfg.partitions, ReplicationFactor: 1})
	}
	resp, err := b.kafka.CreateTopics(ctx, &req)
	if err != nil {
		return err
	}
	for t, e := range resp.Errors {
		if e != nil && !errors.Is(e, kafkago.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t, e)
		}
	}
	return nil
}

// topicCount is the number of records in a topic (sum of end offsets).
func (b *bench) topicCount(ctx context.Context, topic string) (int64, error) {
	ends, err := b.endOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	if len(ends) != len(b.partitions()) {
		return 0, fmt.Errorf("topic %s: %d partitions answered", topic, len(ends))
	}
	var n int64
	for _, end := range ends {
		n += end
	}
	return n, nil
}

// appliedCount is the count a sink role's progress is read from: the
// consumer group's committed offsets (committed to Kafka once a second
// after the store took the rows: a phase's start and end are seen up to a
// second late), and for the PostgreSQL sink the larger of that and its own
// offsets (scoop.sink_offsets, written in the same transaction as the rows,
// so exact; they do not count a partition's last records when those are
// tombstones, which the group's offsets count a second later).
func (b *bench) appliedCount(r *role) func(context.Context) (int64, error) {
	if r.kind == "pg" {
		return func(c context.Context) (int64, error) {
			g, err := b.groupCount(c, r.group, r.topic)
			if err != nil {
				return 0, err
			}
			n, err := b.sinkCount(c, r.group, r.topic)
			return max(g, n), err
		}
	}
	return func(c context.Context) (int64, error) { return b.groupCount(c, r.group, r.topic) }
}

// sinkCount is the number of records the PostgreSQL sink of group applied,
// from its offsets in the service database (the last applied offset per
// partition).
func (b *bench) sinkCount(ctx context.Context, group, topic string) (int64, error) {
	var n int64
	err := b.svc.QueryRow(ctx, `SELECT coalesce(sum("offset" + 1), 0)::int8 FROM scoop.sink_offsets WHERE mapping = $1 AND topic = $2 AND "offset" >= 0`, group, topic).Scan(&n)
	return n, err
}

// groupCount is the number of records a consumer group has committed (the
// sink commits offsets only after the store committed the rows).
func (b *bench) groupCount(ctx context.Context, group, topic string) (int64, error) {
	resp, err := b.kafka.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: b.partitions()}})
	if err != nil {
		return 0, err
	}
	if resp.Error != nil {
		return 0, resp.Error
	}
	var n int64
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return 0, p.Error
		}
		if p.CommittedOffset > 0 {
			n += p.CommittedOffset
		}
	}
	return n, nil
}

// sampleRecords reads ten slices spread over each partition of a topic: the
// mean key+value size of its records, and up to 3,000 of its values (for
// ProducerPerformance --payload-file; tombstones are left out).
func (b *bench) sampleRecords(ctx context.Context, topic string) (float64, [][]byte, error) {
	var total, n int64
	var values [][]byte
	for _, p := range b.partitions() {
		conn, err := kafkago.DialLeader(ctx, "tcp", testenv.Broker(), topic, p)
		if err != nil {
			return 0, nil, err
		}
		first, last, err := conn.ReadOffsets()
		if err != nil {
			conn.Close()
			return 0, nil, err
		}
		first = max(first, 0)
		for k := int64(0); k < 10 && last > first; k++ {
			off := first + (last-first)*k/10
			if _, err := conn.Seek(off, kafkago.SeekAbsolute); err != nil {
				break
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			batch := conn.ReadBatch(1, 4<<20)
			for i := 0; i < 100; i++ {
				m, err := batch.ReadMessage()
				if err != nil {
					break
				}
				total += int64(len(m.Key) + len(m.Value))
				n++
				if m.Value != nil && !bytes.ContainsAny(m.Value, "\n\r") {
					values = append(values, m.Value)
				}
			}
			batch.Close()
		}
		conn.Close()
	}
	if n == 0 {
		return 0, nil, fmt.Errorf("no records sampled from %s", topic)
	}
	return float64(total) / float64(n), values, nil
}

// endOffsets returns the end offset of each partition of a topic.
func (b *bench) endOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	var req kafkago.ListOffsetsRequest
	req.Topics = map[string][]kafkago.OffsetRequest{}
	for _, p := range b.partitions() {
		req.Topics[topic] = append(req.Topics[topic], kafkago.LastOffsetOf(p))
	}
	resp, err := b.kafka.ListOffsets(ctx, &req)
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, p.Error
		}
		out[p.Partition] = p.LastOffset
	}
	return out, nil
}

// offsetSample is a topic's end offsets at a moment.
type offsetSample struct {
	at   time.Time
	ends map[int]int64
}

// watchOffsets samples a topic's end offsets every 10 ms until ctx ends;
// the returned func stops it and gives the samples.
func (b *bench) watchOffsets(ctx context.Context, topic string) func() []offsetSample {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan []offsetSample, 1)
	go func() {
		var out []offsetSample
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if ends, err := b.endOffsets(wctx, topic); err == nil {
				out = append(out, offsetSample{time.Now(), ends})
			}
			select {
			case <-wctx.Done():
				done <- out
				return
			case <-tick.C:
			}
		}
	}()
	return func() []offsetSample {
		cancel()
		return <-done
	}
}

// appendTimes reads every record of a topic and returns, by the integer
// "id" of its key, the first sample in which the topic's end offset had
// passed it: when the record was in Kafka (within a sample's 10 ms and the
// request's round trip).
func (b *bench) appendTimes(ctx context.Context, topic string, samples []offsetSample) (map[int64]time.Time, error) {
	out := map[int64]time.Time{}
	for _, p := range b.partitions() {
		conn, err := kafkago.DialLeader(ctx, "tcp", testenv.Broker(), topic, p)
		if err != nil {
			return nil, err
		}
		first, last, err := conn.ReadOffsets()
		if err != nil {
			conn.Close()
			return nil, err
		}
		if _, err := conn.Seek(max(first, 0), kafkago.SeekAbsolute); err != nil {
			conn.Close()
			return nil, err
		}
		for off := max(first, 0); off < last; {
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			batch := conn.ReadBatch(1, 16<<20)
			for {
				m, err := batch.ReadMessage()
				if err != nil {
					break
				}
				off = m.Offset + 1
				var k struct {
					ID *int64 `json:"id"`
				}
				if json.Unmarshal(m.Key, &k) != nil || k.ID == nil {
					continue
				}
				i := sort.Search(len(samples), func(i int) bool { return samples[i].ends[p] > m.Offset })
				if i < len(samples) {
					out[*k.ID] = samples[i].at
				}
			}
			if err := batch.Close(); err != nil && off < last {
				conn.Close()
				return nil, err
			}
		}
		conn.Close()
	}
	return out, nil
}

// ---------------------------------------------------------------- raw limits

// rawDecode drains a pgoutput slot up to end with pg_recvlogical.
func (b *bench) rawDecode(ctx context.Context, slot, pub, end string) (float64, error) {
	bin := "/usr/lib/postgresql/15/bin/pg_recvlogical"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("pg_recvlogical"); err != nil {
			return 0, errors.New("pg_recvlogical not found")
		}
	}
	cmd := exec.CommandContext(ctx, bin, "-h", "127.0.0.1", "-p", testenv.PGPort, "-U", "postgres", "-d", "monolith",
		"--slot="+slot, "--start", "-o", "proto_version=1", "-o", "publication_names="+pub, "-o", "messages=true",
		"-f", "/dev/null", "-F", "0", "--endpos="+end, "--no-loop")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("pg_recvlogical: %v: %s", err, out.String())
	}
	return time.Since(start).Seconds(), nil
}

var perfLine = regexp.MustCompile(`(\d+) (?:steady state )?records sent, ([0-9.]+) records/sec \(([0-9.]+) MB/sec\), ([0-9.]+) ms avg latency`)

// rawProduce runs Kafka's own ProducerPerformance (acks=all) for n records on
// a fresh topic with scoop's partition count, after n/4 warm-up records (JIT;
// its "steady state" line is used); args choose the records (--record-size
// or --payload-file) and extra producer properties.
func (b *bench) rawProduce(ctx context.Context, topic string, n int, args ...string) (recsPerSec float64, line string, err error) {
	b.add(&b.topics, topic)
	if err := b.createTopics(ctx, topic); err != nil {
		return 0, "", err
	}
	stack := os.Getenv("SCOOP_STACK_DIR")
	if stack == "" {
		stack = filepath.Join(b.root, ".stack")
	}
	java := os.Getenv("SCOOP_JAVA")
	if java == "" {
		java = "java"
	}
	argv := []string{"-Xmx512m",
		"-Dlog4j2.configurationFile=" + filepath.Join(b.root, "scripts", "deps", "kafka", "tools-log4j2.properties"),
		"-cp", filepath.Join(stack, "jars", "kafka", "*"), "org.apache.kafka.tools.ProducerPerformance",
		"--topic", topic, "--num-records", strconv.Itoa(n + n/4), "--warmup-records", strconv.Itoa(n / 4),
		"--throughput", "-1", "--bootstrap-server", testenv.Broker()}
	cmd := exec.CommandContext(ctx, java, append(argv, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, "", fmt.Errorf("ProducerPerformance: %v: %s", err, tail(out.String(), 1500))
	}
	var last []string
	for _, l := range strings.Split(out.String(), "\n") {
		if m := perfLine.FindStringSubmatch(l); m != nil {
			last, line = m, strings.TrimSpace(l)
		}
	}
	if last == nil {
		return 0, "", fmt.Errorf("ProducerPerformance: no summary line in: %s", tail(out.String(), 1500))
	}
	recsPerSec, _ = strconv.ParseFloat(last[2], 64)
	return recsPerSec, line, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// dumpTable writes COPY table TO STDOUT (text format) into a file of the
// run's log directory, read by the raw COPY and the raw upsert (a file, not
// memory: the bench process stays small at 10,000,000 rows).
func (b *bench) dumpTable(ctx context.Context, monoTable string) (path string, rows int64, err error) {
	path = filepath.Join(b.logDir, monoTable+".copy")
	f, err := os.Create(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	mc, err := b.mono.Acquire(ctx)
	if err != nil {
		return "", 0, err
	}
	defer mc.Release()
	tag, err := mc.Conn().PgConn().CopyTo(ctx, f, "COPY "+schema.QuoteIdent(monoTable)+" TO STDOUT")
	if err != nil {
		return "", 0, err
	}
	return path, tag.RowsAffected(), f.Close()
}

// rawCopy times COPY FROM STDIN of a table's rows (a dumpTable file) into a
// fresh service table with the same primary key.
func (b *bench) rawCopy(ctx context.Context, dump, svcTable string) (rows int64, secs float64, err error) {
	if err := b.createSvcTable(ctx, schema.QuoteIdent(svcTable), tableColumns); err != nil {
		return 0, 0, err
	}
	f, err := os.Open(dump)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc, err := b.svc.Acquire(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer sc.Release()
	start := time.Now()
	tag, err := sc.Conn().PgConn().CopyFrom(ctx, f, "COPY "+schema.QuoteIdent(svcTable)+" FROM STDIN")
	secs = time.Since(start).Seconds()
	if err != nil {
		return 0, 0, err
	}
	if !b.cfg.keep {
		b.svc.Exec(ctx, "DROP TABLE IF EXISTS "+schema.QuoteIdent(svcTable))
	}
	return tag.RowsAffected(), secs, nil
}

// upsertSQL is the raw upsert's script: the rows COPYed into a temporary
// staging table, then one INSERT ... SELECT ... ON CONFLICT DO UPDATE into
// the target, in one transaction (psql -1). temp_buffers is raised first so
// that the staging table stays in memory, as the server's best case.
func upsertSQL(target, dump string) string {
	t := schema.QuoteIdent(target)
	cols := "id, k, v, name, amount, created_at, body"
	return "SET temp_buffers = '256MB';\n" +
		"CREATE TEMP TABLE bench_staging (LIKE " + t + ") ON COMMIT DROP;\n" +
		`\copy bench_staging FROM ` + pgQuoteLiteral(dump) + "\n" +
		"INSERT INTO " + t + " AS cur (" + cols + ") SELECT " + cols + " FROM bench_staging" +
		" ON CONFLICT (id) DO UPDATE SET k = EXCLUDED.k, v = EXCLUDED.v, name = EXCLUDED.name," +
		" amount = EXCLUDED.amount, created_at = EXCLUDED.created_at, body = EXCLUDED.body;\n"
}

func pgQuoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// rawPGUpsert is the PostgreSQL server's own upsert limit on the rows the
// sink wrote: psql runs upsertSQL into a fresh service table that already
// holds the rows the scoop sink found there (those with id <= prefill, loaded
// and vacuumed before the clock starts), so each row is the insert or the
// update it was for scoop. Timed: the whole psql run (start and connection
// included, a few ms).
func (b *bench) rawPGUpsert(ctx context.Context, dump, svcTable string, prefill int) (rows int64, secs float64, err error) {
	quoted := schema.QuoteIdent(svcTable)
	if err := b.createSvcTable(ctx, quoted, tableColumns); err != nil {
		return 0, 0, err
	}
	if prefill > 0 {
		sc, err := b.svc.Acquire(ctx)
		if err != nil {
			return 0, 0, err
		}
		f, err := os.Open(dump)
		if err == nil {
			_, err = sc.Conn().PgConn().CopyFrom(ctx, f, "COPY "+quoted+" FROM STDIN")
			f.Close()
		}
		sc.Release()
		if err != nil {
			return 0, 0, fmt.Errorf("pre-load: %w", err)
		}
		if _, err := b.svc.Exec(ctx, `DELETE FROM `+quoted+` WHERE id > $1`, prefill); err != nil {
			return 0, 0, fmt.Errorf("pre-load: %w", err)
		}
		if _, err := b.svc.Exec(ctx, `VACUUM ANALYZE `+quoted); err != nil {
			return 0, 0, fmt.Errorf("pre-load: %w", err)
		}
	}
	script := filepath.Join(b.logDir, svcTable+".sql")
	if err := os.WriteFile(script, []byte(upsertSQL(svcTable, dump)), 0o644); err != nil {
		return 0, 0, err
	}
	defer os.Remove(script)
	bin, err := exec.LookPath("psql")
	if err != nil {
		if bin = "/usr/lib/postgresql/15/bin/psql"; !fileExists(bin) {
			return 0, 0, errors.New("psql not found")
		}
	}
	cmd := exec.CommandContext(ctx, bin, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", script, testenv.PGURL("service"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("psql: %v: %s", err, tail(out.String(), 500))
	}
	secs = time.Since(start).Seconds()
	if err := b.svc.QueryRow(ctx, `SELECT count(*) FROM `+quoted).Scan(&rows); err != nil {
		return 0, 0, err
	}
	if !b.cfg.keep {
		b.svc.Exec(ctx, "DROP TABLE IF EXISTS "+quoted)
	}
	return rows, secs, nil
}

// rawCopyTo times COPY table TO STDOUT into nowhere.
func (b *bench) rawCopyTo(ctx context.Context, table string) (int64, float64, error) {
	c, err := b.mono.Acquire(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer c.Release()
	start := time.Now()
	tag, err := c.Conn().PgConn().CopyTo(ctx, io.Discard, "COPY "+table+" TO STDOUT")
	if err != nil {
		return 0, 0, err
	}
	return tag.RowsAffected(), time.Since(start).Seconds(), nil
}

type cassRow struct {
	id        int64
	k, v      int32
	name      *string
	amount    *inf.Dec
	createdAt time.Time
	body      *string
}

// rawCassandra times a plain gocql loop writing the table's rows with 64
// writes in flight (prepared INSERT, token-aware, LOCAL_QUORUM: as scoop's
// sink, without USING TIMESTAMP) into a table of the types scoop creates.
func (b *bench) rawCassandra(ctx context.Context, monoTable, cassTable string) (int64, float64, error) {
	rows, err := b.mono.Query(ctx, `SELECT id, k, v, name, amount::text, created_at, body FROM `+monoTable)
	if err != nil {
		return 0, 0, err
	}
	var data []cassRow
	for rows.Next() {
		var r cassRow
		var amount *string
		if err := rows.Scan(&r.id, &r.k, &r.v, &r.name, &amount, &r.createdAt, &r.body); err != nil {
			rows.Close()
			return 0, 0, err
		}
		if amount != nil {
			r.amount, _ = new(inf.Dec).SetString(*amount)
		}
		data = append(data, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	secs, err := b.cassLoop(ctx, cassTable, data)
	return int64(len(data)), secs, err
}

// cassLoop creates a table of the types scoop creates and writes data into
// it with 64 writes in flight (prepared INSERT, token-aware, LOCAL_QUORUM:
// as scoop's sink, without USING TIMESTAMP), returning the seconds taken.
func (b *bench) cassLoop(ctx context.Context, cassTable string, data []cassRow) (float64, error) {
	full := b.ks + "." + cassTable
	ddl := `CREATE TABLE ` + full + ` (id bigint, k int, v int, name text, amount decimal, created_at timestamp, body text, PRIMARY KEY ((id)))`
	if err := b.cass.Query(ddl).WithContext(ctx).Exec(); err != nil {
		return 0, err
	}
	const inFlight = 64
	stmt := `INSERT INTO ` + full + ` (id, k, v, name, amount, created_at, body) VALUES (?, ?, ?, ?, ?, ?, ?)`
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for w := 0; w < inFlight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(data)) || ctx.Err() != nil {
					return
				}
				r := &data[i]
				var amount any
				if r.amount != nil {
					amount = r.amount
				}
				if err := b.cass.Query(stmt, r.id, r.k, r.v, r.name, amount, r.createdAt, r.body).WithContext(ctx).Exec(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if e := firstErr.Load(); e != nil {
		return 0, e.(error)
	}
	if !b.cfg.keep {
		b.cass.Query(`DROP TABLE IF EXISTS ` + full).WithContext(ctx).Exec()
	}
	return secs, nil
}

// cassWarmup bounds warmCassandra.
const cassWarmup = time.Minute

// warmCassandra writes synthetic rows with the gocql loop for at most
// cassWarmup before anything is measured: on a Cassandra started minutes
// earlier the first Cassandra phase (a scoop sink, measured before its gocql
// loop) ran at 53% of the loop that followed it, against 81% on a warm
// server, and still at 60% after 20 s of warm-up writes.
func (b *bench) warmCassandra(ctx context.Context) {
	n := min(b.cfg.rows, 1_000_000)
	data := make([]cassRow, n)
	amount := inf.NewDec(4250, 2)
	now, name := time.Now(), "warm-up"
	for i := range data {
		data[i] = cassRow{id: int64(i + 1), k: int32(i % 1000), v: int32(i), name: &name, amount: amount, createdAt: now}
	}
	wctx, cancel := context.WithTimeout(ctx, cassWarmup)
	defer cancel()
	secs, err := b.cassLoop(wctx, "warmup", data)
	switch {
	case err != nil && wctx.Err() == nil:
		logf("cassandra warm-up: %v (going on)", err)
	case ctx.Err() != nil:
		logf("cassandra warm-up: interrupted")
	case err != nil || wctx.Err() != nil:
		logf("cassandra warm-up: stopped after %s", cassWarmup)
	default:
		logf("cassandra warm-up: %d rows in %.2fs: %.0f rows/s", n, secs, float64(n)/secs)
	}
	if !b.cfg.keep {
		b.cass.Query(`DROP TABLE IF EXISTS ` + b.ks + ".warmup").WithContext(ctx).Exec()
	}
}

// ------------------------------------------------------------- verification

// checksum is count, sum(v) and sum(length(body)) of a PostgreSQL table.
func pgChecksum(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, table string) (string, error) {
	var n, sv, sb int64
	err := q.QueryRow(ctx, `SELECT count(*), coalesce(sum(v), 0), coalesce(sum(length(body)), 0) FROM `+table).Scan(&n, &sv, &sb)
	return fmt.Sprintf("rows=%d sum(v)=%d body_bytes=%d", n, sv, sb), err
}

// cassChecksum is count and sum(v) of a Cassandra table, summed over 64
// token ranges: one count(*) over a million rows outlasts the driver's 10 s
// timeout on a loaded machine.
func (b *bench) cassChecksum(ctx context.Context, table string) (string, error) {
	const parts = 64
	q := `SELECT count(*), sum(v) FROM ` + b.ks + "." + table + ` WHERE token(id) >= ? AND token(id) <= ?`
	var n, sv int64
	step := int64(math.MaxInt64/parts) * 2
	for i := int64(0); i < parts; i++ {
		lo := math.MinInt64 + i*step
		hi := lo + step - 1
		if i == parts-1 {
			hi = math.MaxInt64
		}
		var cn int64
		var csv int64
		if err := b.cass.Query(q, lo, hi).WithContext(ctx).Consistency(gocql.One).Scan(&cn, &csv); err != nil {
			return "", err
		}
		n, sv = n+cn, sv+csv
	}
	return fmt.Sprintf("rows=%d sum(v)=%d", n, sv), nil
}

func monoChecksumCass(ctx context.Context, b *bench, table string) (string, error) {
	var n, sv int64
	err := b.mono.QueryRow(ctx, `SELECT count(*), coalesce(sum(v), 0) FROM `+table).Scan(&n, &sv)
	return fmt.Sprintf("rows=%d sum(v)=%d", n, sv), err
}
