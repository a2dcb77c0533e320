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
	"github.com/scoop-cdc/scoop/schema"
)

// TestSecure runs against the secure profile of scripts/stack (TLS from a
// throw-away CA with verified hostnames, SCRAM and PLAIN over SASL_SSL,
// PostgreSQL's scram-sha-256 over hostssl only, Cassandra's
// PasswordAuthenticator with required client encryption): the whole path
// works, and each wrong setting is refused with an error naming it. The
// profile is started once for all of it and stopped at the end.
func TestSecure(t *testing.T) {
	s := testenv.StartSecure(t)
	start := time.Now()
	t.Run("whole path", func(t *testing.T) { securePath(t, s) })
	t.Logf("secure tests took %s (after the profile started)", time.Since(start).Round(100*time.Millisecond))
}

// secureE2E is the environment of a scoop against the secure profile.
func secureE2E(t *testing.T, s *testenv.Secure, mappings string) *e2e {
	e := &e2e{prefix: testenv.Name("p"), slot: testenv.Name("s"), keyspace: testenv.Name("ks")}
	e.env = append([]string{
		"SCOOP_SOURCE_URL=" + s.PGURL("monolith"),
		"SCOOP_KAFKA_BROKERS=" + s.Broker(),
		"SCOOP_TOPIC_PREFIX=" + e.prefix, "SCOOP_SLOT=" + e.slot, "SCOOP_PUBLICATION=" + e.slot,
		"SCOOP_MAPPINGS_FILE=" + writeMappings(t, mappings),
		"SCOOP_STORE_ACCOUNTS_URL=" + s.PGURL("service"),
		"SCOOP_STORE_ORDERS_URL=cassandra://" + s.CassandraAddr() + "/" + e.keyspace,
		"SCOOP_ADMIN_ADDR=127.0.0.1:0",
		"SCOOP_HEARTBEAT_INTERVAL=500ms",
	}, s.Env()...)
	return e
}

func securePath(t *testing.T, s *testenv.Secure) {
	mono := s.Conn(t, "monolith")
	table := testenv.Name("sec")
	// public.: role scoop owns a schema named scoop, first on its search_path.
	q := "public." + schema.QuoteIdent(table)
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, note text)`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, 'n' || g FROM generate_series(1, 50) g`, q))
	e := secureE2E(t, s, "mappings: []\n")
	file := writeMappings(t, fmt.Sprintf("mappings:\n  - name: pg\n    source: public.%[1]s\n    store: accounts\n  - name: cass\n    source: public.%[1]s\n    store: orders\n", table))
	if out, err := e.cli(t, "mappings", "apply", "-f", file); err != nil || strings.Count(out, "add") != 2 {
		t.Fatalf("mappings apply over TLS: %v\n%s", err, out)
	}
	if out, err := e.cli(t, "mappings", "list"); err != nil || !strings.Contains(out, "public."+table) {
		t.Fatalf("mappings list over TLS: %v\n%s", err, out)
	}
	if out, err := e.cli(t, "mappings", "describe", "cass"); err != nil || !strings.Contains(out, `"consumer_group": "`+e.prefix+`.cass"`) {
		t.Fatalf("mappings describe over TLS: %v\n%s", err, out)
	}
	d := startProc(t, e.withoutFile())
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = 'changed' WHERE id <= 10`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id > 45`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (100, 'streamed')`, q))
	want := secureRows(t, s.PGURL("monolith"), table)
	svc := secureRows(t, s.PGURL("service"), table)
	waitEqual(t, d, "the PostgreSQL store over TLS", want, svc)
	cass := s.Cassandra(t, "")
	cassRows := func() []string {
		var out []string
		it := cass.Query(fmt.Sprintf(`SELECT id, note FROM %s.%s`, schema.QuoteIdent(e.keyspace), schema.QuoteIdent(table))).Iter()
		var id int
		var note string
		for it.Scan(&id, &note) {
			out = append(out, fmt.Sprintf("%d %s", id, note))
		}
		if it.Close() != nil {
			return nil
		}
		sort.Strings(out)
		return out
	}
	waitEqual(t, d, "the Cassandra store over TLS", want, cassRows)

	testenv.Exec(t, s.Conn(t, "service"), fmt.Sprintf(`TRUNCATE %s`, q))
	out, err := e.cli(t, "replay", "pg", "--from-offset", "0", "--wait", "60s")
	if err != nil || !strings.Contains(out, "caught up") {
		t.Fatalf("replay over TLS: %v\n%s", err, out)
	}
	waitEqual(t, d, "the PostgreSQL store replayed over TLS", want, svc)
}

// secureRows is every row of a table as JSON text, sorted, read as role
// scoop over TLS.
func secureRows(t *testing.T, url, table string) func() []string {
	return func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			return nil
		}
		defer c.Close(context.Background())
		rows, err := c.Query(ctx, fmt.Sprintf(`SELECT id, note FROM public.%s`, schema.QuoteIdent(table)))
		if err != nil {
			return nil
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id int
			var note string
			if rows.Scan(&id, &note) == nil {
				out = append(out, fmt.Sprintf("%d %s", id, note))
			}
		}
		sort.Strings(out)
		return out
	}
}
