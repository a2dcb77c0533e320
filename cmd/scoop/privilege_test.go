package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// leastDatabases creates a monolith and a service database of their own
// for one test, so that scoop's schema in each is made (and owned) by the
// test's roles as on a new installation; dropped with their slots at the
// end.
func leastDatabases(t *testing.T) (mono, svc string) {
	t.Helper()
	admin := testenv.Conn(t, "postgres")
	mono, svc = testenv.Name("lp_mono"), testenv.Name("lp_svc")
	for _, db := range []string{mono, svc} {
		testenv.Exec(t, admin, "CREATE DATABASE "+schema.QuoteIdent(db))
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testenv.PGURL("postgres"))
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		for _, db := range []string{mono, svc} {
			c.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, db)
			c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+schema.QuoteIdent(db)+" WITH (FORCE)")
		}
	})
	return mono, svc
}

// leastRoles creates, for one test, the source role of docs/security.md
// (LOGIN REPLICATION, SELECT on the table, CREATE on the database for
// scoop's schema, owner of a publication the table's owner made for the
// table) and the PostgreSQL sink role of docs/sinks.md, and removes both
// when the test ends. It returns their names.
func leastRoles(t *testing.T, monoDB, svcDB, table, publication string) (source, sink string) {
	t.Helper()
	mono, svc := testenv.Conn(t, monoDB), testenv.Conn(t, svcDB)
	source, sink = testenv.Name("src"), testenv.Name("snk")
	qs, qk := schema.QuoteIdent(source), schema.QuoteIdent(sink)
	t.Cleanup(func() {
		// Before leastDatabases' cleanup (registered earlier): what the
		// roles own or were granted in the two databases goes first.
		for _, db := range []string{monoDB, svcDB, "postgres"} {
			c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
			if err != nil {
				continue
			}
			c.Exec(context.Background(), "DROP OWNED BY "+qs+", "+qk)
			if db == "postgres" {
				c.Exec(context.Background(), "DROP ROLE IF EXISTS "+qs)
				c.Exec(context.Background(), "DROP ROLE IF EXISTS "+qk)
			}
			c.Close(context.Background())
		}
	})
	testenv.Exec(t, mono, "CREATE ROLE "+qs+" LOGIN REPLICATION")
	testenv.Exec(t, mono, "CREATE ROLE "+qk+" LOGIN")
	// The source: the mapped table, read only; scoop's schema.
	testenv.Exec(t, mono, fmt.Sprintf("GRANT SELECT ON %s TO %s", schema.QuoteIdent(table), qs))
	testenv.Exec(t, mono, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", schema.QuoteIdent(monoDB), qs))
	// The publication, made by the table's owner, owned by the role.
	if publication != "" {
		testenv.Exec(t, mono, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", schema.QuoteIdent(publication), schema.QuoteIdent(table)))
		testenv.Exec(t, mono, fmt.Sprintf("ALTER PUBLICATION %s OWNER TO %s", schema.QuoteIdent(publication), qs))
	}
	// The sink, as docs/sinks.md lists.
	testenv.Exec(t, svc, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", schema.QuoteIdent(svcDB), qk))
	testenv.Exec(t, svc, "GRANT CREATE ON SCHEMA public TO "+qk)
	testenv.Exec(t, svc, "GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), pg_replication_origin_session_setup(text), pg_replication_origin_xact_setup(pg_lsn, timestamptz) TO "+qk)
	return source, sink
}

// roleURL is db's URL for role (the default stack trusts loopback).
func roleURL(db, role string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%s/%s?sslmode=disable", role, testenv.PGPort, db)
}

// TestLeastPrivilege: the whole forward path (snapshot, stream, the
// PostgreSQL sink) with a source role that has only REPLICATION, SELECT on
// the mapped table, its publication and scoop's schema, and a sink role
// with only what docs/sinks.md lists.
func TestLeastPrivilege(t *testing.T) {
	monoDB, svcDB := leastDatabases(t)
	mono := testenv.Conn(t, monoDB)
	table := testenv.Name("least")
	q := schema.QuoteIdent(table)
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text)`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g FROM generate_series(1, 50) g`, q))
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: least\n    source: public.%s\n    store: accounts\n", table))
	source, sink := leastRoles(t, monoDB, svcDB, table, e.slot)
	e.env = setEnv(e.env, "SCOOP_SOURCE_URL", roleURL(monoDB, source))
	e.env = setEnv(e.env, "SCOOP_STORE_ACCOUNTS_URL", roleURL(svcDB, sink))
	svc := testenv.Conn(t, svcDB)
	d := startProc(t, e.env)
	waitEqual(t, d, "snapshot as least-privilege roles", pgOrders(t, monoDB, table), pgOrders(t, svcDB, table))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'new' || g FROM generate_series(51, 80) g`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET note = 'changed' WHERE id %% 3 = 0`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id %% 7 = 0`, q))
	waitEqual(t, d, "stream as least-privilege roles", pgOrders(t, monoDB, table), pgOrders(t, svcDB, table))
	// The roles did the work: the sink made the target, the source's
	// role holds the slot.
	var owner, slotUser string
	if err := svc.QueryRow(context.Background(), `SELECT tableowner FROM pg_tables WHERE tablename = $1`, table).Scan(&owner); err != nil || owner != sink {
		t.Fatalf("target table owner %q (%v), want %s", owner, err, sink)
	}
	if err := mono.QueryRow(context.Background(), `SELECT a.usename FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid WHERE s.slot_name = $1`, e.slot).Scan(&slotUser); err != nil || slotUser != source {
		t.Fatalf("slot held by %q (%v), want %s", slotUser, err, source)
	}
	if logs := d.logs(); strings.Contains(logs, "permission denied") || strings.Contains(logs, "must be owner") {
		t.Fatalf("a privilege was missing on the way:\n%s", tail(logs, 3000))
	}
}

// TestLeastPrivilegeRefusals: a missing privilege stops the source or the
// mapping with an error that says what to grant: the source's role cannot
// make the publication, the sink's cannot make replication origins.
func TestLeastPrivilegeRefusals(t *testing.T) {
	monoDB, svcDB := leastDatabases(t)
	mono := testenv.Conn(t, monoDB)
	table := testenv.Name("least")
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, note text)`, schema.QuoteIdent(table)))
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: least\n    source: public.%s\n    store: accounts\n", table))
	// No publication made by the table's owner.
	source, sink := leastRoles(t, monoDB, svcDB, table, "")
	e.env = setEnv(e.env, "SCOOP_SOURCE_URL", roleURL(monoDB, source))
	e.env = setEnv(e.env, "SCOOP_STORE_ACCOUNTS_URL", roleURL(svcDB, sink))
	// Nor may the sink's role make replication origins.
	testenv.Exec(t, testenv.Conn(t, svcDB), "REVOKE EXECUTE ON FUNCTION pg_replication_origin_create(text) FROM "+schema.QuoteIdent(sink))
	d := startProc(t, e.env)
	pub, qt := schema.QuoteIdent(e.slot), schema.QuoteQualified("public", table)
	want := "error=" + strconv.Quote(fmt.Sprintf("create publication %s: ERROR: must be owner of table %s (SQLSTATE 42501) (fix: PostgreSQL lets only a table's owner publish it; as the owner of the mapped tables run CREATE PUBLICATION %s FOR TABLE %s; ALTER PUBLICATION %s OWNER TO %s (a role with CREATE on the database); scoop then uses it)",
		e.slot, table, pub, qt, pub, schema.QuoteIdent(source)))
	sinkWant := "error=" + strconv.Quote(`mapping least: create replication origin "scoop" (needs superuser or EXECUTE on pg_replication_origin_create): ERROR: permission denied for function pg_replication_origin_create (SQLSTATE 42501)`)
	deadline := time.Now().Add(60 * time.Second)
	for _, want := range []string{want, sinkWant} {
		for !strings.Contains(d.logs(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s in the log:\n%s", want, tail(d.logs(), 3000))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// TestLeastPrivilegeOriginPosition: a sink role without EXECUTE on
// pg_replication_origin_xact_setup takes the snapshot (no source position
// to record) and pauses at the first streamed change, naming the function.
func TestLeastPrivilegeOriginPosition(t *testing.T) {
	monoDB, svcDB := leastDatabases(t)
	mono := testenv.Conn(t, monoDB)
	table := testenv.Name("least")
	q := schema.QuoteIdent(table)
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, amount numeric(12,2), note text)`, q))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'n' || g FROM generate_series(1, 5) g`, q))
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: least\n    source: public.%s\n    store: accounts\n", table))
	source, sink := leastRoles(t, monoDB, svcDB, table, e.slot)
	testenv.Exec(t, testenv.Conn(t, svcDB), "REVOKE EXECUTE ON FUNCTION pg_replication_origin_xact_setup(pg_lsn, timestamptz) FROM "+schema.QuoteIdent(sink))
	e.env = setEnv(e.env, "SCOOP_SOURCE_URL", roleURL(monoDB, source))
	e.env = setEnv(e.env, "SCOOP_STORE_ACCOUNTS_URL", roleURL(svcDB, sink))
	d := startProc(t, e.env)
	waitEqual(t, d, "snapshot without xact_setup", pgOrders(t, monoDB, table), pgOrders(t, svcDB, table))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (6, 6, 'streamed')`, q))
	want := "error=" + strconv.Quote(`mapping least: set the origin's commit position (needs superuser or EXECUTE on pg_replication_origin_xact_setup): ERROR: permission denied for function pg_replication_origin_xact_setup (SQLSTATE 42501)`)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(d.logs(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the log:\n%s", want, tail(d.logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
