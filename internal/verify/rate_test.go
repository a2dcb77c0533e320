package verify_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/internal/verify"
	"github.com/scoop-cdc/scoop/internal/verify/verifyrate"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// TestVerifyRate measures a clean verify of VERIFY_RATE_ROWS rows (e.g.
// 1000000) per store kind, next to the raw read rates (COPY TO for
// PostgreSQL, a full scan for Cassandra). It only runs when the variable is
// set: go test ./internal/verify -run TestVerifyRate -v (the benchmark's
// verify phase measures the same, see bench/README.md).
func TestVerifyRate(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VERIFY_RATE_ROWS"))
	if n == 0 {
		t.Skip("set VERIFY_RATE_ROWS to measure")
	}
	testenv.Require(t)
	ctx := context.Background()
	table := testenv.Name("vrate")
	q := schema.QuoteIdent(table)
	mono, svc := testenv.Conn(t, "monolith"), testenv.Conn(t, "service")
	t.Cleanup(func() {
		mono.Exec(context.Background(), "DROP TABLE IF EXISTS "+q)
		svc.Exec(context.Background(), "DROP TABLE IF EXISTS "+q)
	})
	if err := verifyrate.CreateSource(ctx, mono, table, n); err != nil {
		t.Fatal(err)
	}
	if err := verifyrate.CopyToPostgres(ctx, mono, svc, table); err != nil {
		t.Fatal(err)
	}
	raw, err := verifyrate.CopyTo(ctx, mono, table)
	if err != nil {
		t.Fatal(err)
	}
	m := pipeline.Mapping{Name: "rate", Source: "public." + table, Store: "svc"}
	res, err := verifyrate.Measure(ctx, verify.Config{SourceURL: testenv.PGURL("monolith"), StoreURL: testenv.PGURL("service"), Mapping: m}, int64(n))
	if err != nil {
		t.Fatalf("PostgreSQL verify: %v", err)
	}
	t.Logf("PostgreSQL: verify %.0f rows/s (%.1fs), COPY TO %.0f rows/s, peak heap %.1f MB", res.PerSec, res.Seconds, raw.PerSec, res.PeakHeapMB)

	if os.Getenv("VERIFY_RATE_STORES") == "postgres" {
		return
	}
	keyspace := testenv.Name("vrate")
	s := cassandraSession(t)
	if err := s.Query("CREATE KEYSPACE " + schema.QuoteIdent(keyspace) + " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").Exec(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Query("DROP KEYSPACE " + schema.QuoteIdent(keyspace)).Exec() })
	if err := verifyrate.CopyToCassandra(ctx, mono, s, keyspace, table); err != nil {
		t.Fatal(err)
	}
	scan, err := verifyrate.Scan(ctx, s, keyspace, table)
	if err != nil {
		t.Fatal(err)
	}
	res, err = verifyrate.Measure(ctx, verify.Config{SourceURL: testenv.PGURL("monolith"), StoreURL: "cassandra://" + testenv.CassandraAddr() + "/" + keyspace, Mapping: m}, int64(n))
	if err != nil {
		t.Fatalf("Cassandra verify: %v", err)
	}
	t.Logf("Cassandra: verify %.0f rows/s (%.1fs), full scan %.0f rows/s, peak heap %.1f MB", res.PerSec, res.Seconds, scan.PerSec, res.PeakHeapMB)
}

// TestMeasureRefusesADifferentPair: a measurement is of a clean verify
// only; a pair that differs is an error naming the differences.
func TestMeasureRefusesADifferentPair(t *testing.T) {
	testenv.Require(t)
	ctx := context.Background()
	table := testenv.Name("vrate")
	q := schema.QuoteIdent(table)
	mono, svc := testenv.Conn(t, "monolith"), testenv.Conn(t, "service")
	t.Cleanup(func() {
		mono.Exec(context.Background(), "DROP TABLE IF EXISTS "+q)
		svc.Exec(context.Background(), "DROP TABLE IF EXISTS "+q)
	})
	if err := verifyrate.CreateSource(ctx, mono, table, 1000); err != nil {
		t.Fatal(err)
	}
	if err := verifyrate.CopyToPostgres(ctx, mono, svc, table); err != nil {
		t.Fatal(err)
	}
	cfg := verify.Config{SourceURL: testenv.PGURL("monolith"), StoreURL: testenv.PGURL("service"),
		Mapping: pipeline.Mapping{Name: "rate", Source: "public." + table, Store: "svc"}}
	res, err := verifyrate.Measure(ctx, cfg, 1000)
	if err != nil {
		t.Fatalf("clean pair: %v", err)
	}
	if res.Rows != 1000 || res.PerSec <= 0 || res.PeakHeapMB <= 0 {
		t.Fatalf("clean pair: %+v", res)
	}
	if _, err := verifyrate.Measure(ctx, cfg, 999); err == nil || err.Error() != "verify rate: not a clean pair of 999 rows: 1000 source rows, 0 missing, 0 extra, 0 different, 0 unsettled" {
		t.Fatalf("wrong row count: got %v", err)
	}
	testenv.Exec(t, svc, "UPDATE "+q+" SET note = 'changed' WHERE id = 7")
	testenv.Exec(t, svc, "DELETE FROM "+q+" WHERE id = 8")
	_, err = verifyrate.Measure(ctx, cfg, 1000)
	if err == nil || err.Error() != "verify rate: not a clean pair of 1000 rows: 1000 source rows, 1 missing, 0 extra, 1 different, 0 unsettled" {
		t.Fatalf("changed target: got %v", err)
	}
}

func cassandraSession(t *testing.T) *gocql.Session {
	cl := gocql.NewCluster("127.0.0.1")
	cl.Port, _ = strconv.Atoi(testenv.CassandraPort)
	cl.Timeout = 30 * time.Second
	s, err := cl.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
