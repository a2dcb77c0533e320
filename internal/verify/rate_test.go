package verify

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
	"gopkg.in/inf.v0"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// TestVerifyRate measures a clean verify of VERIFY_RATE_ROWS rows (e.g.
// 1000000) per store kind, next to the raw read rates (COPY TO for
// PostgreSQL, a full scan for Cassandra). It only runs when the variable is
// set: go test ./internal/verify -run TestVerifyRate -v
func TestVerifyRate(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VERIFY_RATE_ROWS"))
	if n == 0 {
		t.Skip("set VERIFY_RATE_ROWS to measure")
	}
	testenv.Require(t)
	ctx := context.Background()
	table := testenv.Name("vrate")
	q := schema.QuoteIdent(table)
	ddl := fmt.Sprintf(`CREATE TABLE %s (id bigint PRIMARY KEY, amount numeric(12,2), note text, at timestamptz)`, q)
	mono, svc := testenv.Conn(t, "monolith"), testenv.Conn(t, "service")
	for _, c := range []*pgx.Conn{mono, svc} {
		testenv.Exec(t, c, ddl)
		t.Cleanup(func() { c.Exec(context.Background(), "DROP TABLE "+q) })
	}
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g * 1.5, 'note ' || g, '2026-01-01'::timestamptz + g * interval '1 ms' FROM generate_series(1, %d) g`, q, n))
	testenv.Exec(t, mono, "VACUUM ANALYZE "+q)

	// COPY TO, the raw read rate of the monolith.
	start := time.Now()
	if _, err := mono.PgConn().CopyTo(ctx, io.Discard, "COPY "+q+" TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	copyRate := float64(n) / time.Since(start).Seconds()
	// The PostgreSQL target: the same rows.
	pr, pw := io.Pipe()
	go func() {
		_, err := mono.PgConn().CopyTo(ctx, pw, "COPY "+q+" TO STDOUT")
		pw.CloseWithError(err)
	}()
	if _, err := svc.PgConn().CopyFrom(ctx, pr, "COPY "+q+" FROM STDIN"); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, svc, "VACUUM ANALYZE "+q)

	m := pipeline.Mapping{Name: "rate", Source: "public." + table, Store: "svc"}
	peak := watchHeap(t)
	rep, err := Run(ctx, Config{SourceURL: testenv.PGURL("monolith"), StoreURL: testenv.PGURL("service"), Mapping: m})
	if err != nil || !rep.Equal() || rep.Rows != int64(n) {
		t.Fatalf("PostgreSQL verify: %v %+v", err, rep)
	}
	t.Logf("PostgreSQL: verify %.0f rows/s (%.1fs), COPY TO %.0f rows/s, peak heap %d MB", float64(n)/rep.Seconds, rep.Seconds, copyRate, peak()>>20)

	if os.Getenv("VERIFY_RATE_STORES") == "postgres" {
		return
	}
	// The Cassandra target.
	keyspace := testenv.Name("vrate")
	cl := gocql.NewCluster("127.0.0.1")
	fmt.Sscan(testenv.CassandraPort, &cl.Port)
	cl.Timeout = 30 * time.Second
	s, err := cl.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ct := schema.QuoteIdent(keyspace) + "." + q
	for _, cql := range []string{
		"CREATE KEYSPACE " + schema.QuoteIdent(keyspace) + " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
		"CREATE TABLE " + ct + " (id bigint, amount decimal, note text, at timestamp, PRIMARY KEY ((id)))",
	} {
		if err := s.Query(cql).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { s.Query("DROP KEYSPACE " + schema.QuoteIdent(keyspace)).Exec() })
	rows, err := mono.Query(ctx, "SELECT id, amount::text, note, at FROM "+q)
	if err != nil {
		t.Fatal(err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(128)
	for rows.Next() {
		var id int64
		var amount, note string
		var at time.Time
		if err := rows.Scan(&id, &amount, &note, &at); err != nil {
			t.Fatal(err)
		}
		dec, _ := new(inf.Dec).SetString(amount)
		g.Go(func() error {
			return s.Query("INSERT INTO "+ct+" (id, amount, note, at) VALUES (?, ?, ?, ?)", id, dec, note, at).WithContext(gctx).Exec()
		})
	}
	rows.Close()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	var scanned atomic.Int64
	iter := s.Query("SELECT id, amount, note, at FROM " + ct).PageSize(5000).Iter()
	var id int64
	var amount *inf.Dec
	var note string
	var at time.Time
	for iter.Scan(&id, &amount, &note, &at) {
		scanned.Add(1)
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	scanRate := float64(scanned.Load()) / time.Since(start).Seconds()
	peak = watchHeap(t)
	rep, err = Run(ctx, Config{SourceURL: testenv.PGURL("monolith"), StoreURL: "cassandra://" + testenv.CassandraAddr() + "/" + keyspace, Mapping: m})
	if err != nil || !rep.Equal() || rep.Rows != int64(n) {
		t.Fatalf("Cassandra verify: %v %+v", err, rep)
	}
	t.Logf("Cassandra: verify %.0f rows/s (%.1fs), full scan %.0f rows/s, peak heap %d MB", float64(n)/rep.Seconds, rep.Seconds, scanRate, peak()>>20)
}

// watchHeap samples the heap until the returned function is called, which
// returns the peak.
func watchHeap(t *testing.T) func() uint64 {
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	var once bool
	return func() uint64 {
		if !once {
			close(done)
			once = true
		}
		return peak.Load()
	}
}
