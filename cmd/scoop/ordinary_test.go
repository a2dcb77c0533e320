package main

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// wideRows reads id|note|md5(big)|n of a table in the monolith or a
// PostgreSQL store, sorted.
func wideRows(db, table string) func() []string {
	return func() []string {
		c, err := pgx.Connect(context.Background(), testenv.PGURL(db))
		if err != nil {
			return nil
		}
		defer c.Close(context.Background())
		rows, err := c.Query(context.Background(), fmt.Sprintf(`SELECT id || '|' || coalesce(note, '') || '|' || coalesce(md5(big), '') || '|' || coalesce(n::text, '') FROM %s`, schema.QuoteIdent(table)))
		if err != nil {
			return nil
		}
		out, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		sort.Strings(out)
		return out
	}
}

// wideCassandra reads the same from a Cassandra table.
func wideCassandra(t *testing.T, keyspace, table string) func() []string {
	session := lazyCassandra(t, keyspace)
	return func() []string {
		s := session()
		if s == nil {
			return nil
		}
		iter := s.Query(fmt.Sprintf(`SELECT id, note, big, n FROM %s`, schema.QuoteIdent(table))).Iter()
		var out []string
		var id int
		var note, big *string
		var n *int
		for iter.Scan(&id, &note, &big, &n) {
			line := fmt.Sprintf("%d|", id)
			if note != nil {
				line += *note
			}
			line += "|"
			if big != nil {
				line += fmt.Sprintf("%x", md5.Sum([]byte(*big)))
			}
			line += "|"
			if n != nil {
				line += fmt.Sprint(*n)
			}
			out = append(out, line)
		}
		if err := iter.Close(); err != nil {
			return nil
		}
		sort.Strings(out)
		return out
	}
}

// incompressible returns text that PostgreSQL stores out of line (TOAST)
// even after compression: random bytes, base64-encoded.
func incompressible(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// TestOrdinaryWrites: what every monolith runs, into both stores with small
// sink batches (so batches cut transactions): a bulk COPY, a table with
// REPLICA IDENTITY FULL, primary-key updates (with an out-of-line TOAST
// value the update leaves alone), delete and re-insert of one key in one
// transaction, and several updates of one key in one transaction.
func TestOrdinaryWrites(t *testing.T) {
	mono := testenv.Conn(t, "monolith")
	plain, full := testenv.Name("plain"), testenv.Name("full")
	for _, tbl := range []string{plain, full} {
		testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, note text, big text, n int)`, schema.QuoteIdent(tbl)))
	}
	testenv.Exec(t, mono, fmt.Sprintf(`ALTER TABLE %s REPLICA IDENTITY FULL`, schema.QuoteIdent(full)))
	var maps strings.Builder
	maps.WriteString("mappings:\n")
	for _, tbl := range []string{plain, full} {
		fmt.Fprintf(&maps, "  - name: %[1]s-pg\n    source: public.%[1]s\n    store: accounts\n  - name: %[1]s-cass\n    source: public.%[1]s\n    store: orders\n", tbl)
	}
	e := newE2E(t, maps.String())
	e.env = append(e.env, "SCOOP_SINK_BATCH=7")
	d := startProc(t, e.env)
	waitReady(t, d)
	ctx := context.Background()
	big := incompressible(12000)
	for _, tbl := range []string{plain, full} {
		q := schema.QuoteIdent(tbl)
		// A bulk COPY: one WAL record per page, every row of a page at the
		// same LSN.
		rows := make([][]any, 3000)
		for i := range rows {
			rows[i] = []any{int32(i + 1), fmt.Sprintf("copied %d", i+1), nil, int32(i)}
		}
		if _, err := mono.CopyFrom(ctx, pgx.Identifier{tbl}, []string{"id", "note", "big", "n"}, pgx.CopyFromRows(rows)); err != nil {
			t.Fatal(err)
		}
		testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET big = $1 WHERE id %% 100 = 0`, q), big)
		// Key changes: the TOASTed value is not in the WAL record of the
		// update, yet the row at its new key must carry it.
		testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET id = id + 100000 WHERE id %% 50 = 0`, q))
		testenv.Exec(t, mono, fmt.Sprintf(`UPDATE %s SET n = n + 1 WHERE id %% 7 = 0`, q))
		testenv.Exec(t, mono, fmt.Sprintf(`DELETE FROM %s WHERE id %% 9 = 0`, q))
		// One key, many changes in one transaction.
		testenv.Exec(t, mono, fmt.Sprintf(`BEGIN;
			DELETE FROM %[1]s WHERE id = 1; INSERT INTO %[1]s VALUES (1, 'back', NULL, 1);
			INSERT INTO %[1]s VALUES (9, 'brief', NULL, 0); DELETE FROM %[1]s WHERE id = 9;
			UPDATE %[1]s SET note = 'b-first' WHERE id = 2; UPDATE %[1]s SET note = 'a-second' WHERE id = 2;
			UPDATE %[1]s SET id = 200000 WHERE id = 3; UPDATE %[1]s SET id = 3 WHERE id = 200000;
			COMMIT`, q))
	}
	for _, tbl := range []string{plain, full} {
		waitEqual(t, d, tbl+" -> PostgreSQL", wideRows("monolith", tbl), wideRows("service", tbl))
		waitEqual(t, d, tbl+" -> Cassandra", wideRows("monolith", tbl), wideCassandra(t, e.keyspace, tbl))
	}
	// Events of the REPLICA IDENTITY FULL table are keyed by the primary key.
	msgs := testenv.ReadTopic(t, e.prefix+".public."+full, 1, 30*time.Second)
	var key map[string]any
	if err := json.Unmarshal(msgs[0].Key, &key); err != nil || len(key) != 1 || key["id"] == nil {
		t.Fatalf("key of an event of a REPLICA IDENTITY FULL table: %s (want only the primary key)", msgs[0].Key)
	}
}
