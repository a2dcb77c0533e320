package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gocql/gocql"

	"github.com/scoop-cdc/scoop/connectors/cassandra"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// TestSinkFollowsSourceColumns: each sink refuses a batch carrying a column
// it does not know before writing any of it, a sink rebuilt with the new
// shape adds the column, a dropped column stops being written (and its
// PostgreSQL NOT NULL goes), and targets that cannot follow are refused with
// the fix.
func TestSinkFollowsSourceColumns(t *testing.T) {
	testenv.Require(t)
	keyspace := testenv.Name("evo")
	for _, kind := range []string{"postgres", "cassandra"} {
		t.Run(kind, func(t *testing.T) {
			table := testenv.Name("evo")
			ctx := context.Background()
			open := func(target pipeline.Target) (pipeline.Sink, error) {
				target.Table = table
				if kind == "postgres" {
					return postgres.NewSink(ctx, postgres.SinkConfig{URL: testenv.PGURL("service"), Mapping: table, Topic: "evo", Target: target})
				}
				return cassandra.NewSink(ctx, cassandra.SinkConfig{URL: "cassandra://" + testenv.CassandraAddr() + "/" + keyspace, Mapping: table, Target: target})
			}
			mustOpen := func(target pipeline.Target) pipeline.Sink {
				s, err := open(target)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close(ctx) })
				return s
			}
			read := func(id int) map[string]string {
				if kind == "postgres" {
					return readPostgres(t, table, id)
				}
				return readCassandra(t, keyspace, table, id)
			}
			id := pipeline.Column{Name: "id", Source: "id", SQLType: "integer", BaseType: "int4", Key: true}
			note := pipeline.Column{Name: "note", Source: "note", SQLType: "text", BaseType: "text", NotNull: true}
			extra := pipeline.Column{Name: "Extra", Source: "Extra", SQLType: "bigint", BaseType: "int8"}

			s := mustOpen(pipeline.Target{Columns: []pipeline.Column{id, note}})
			apply(t, s, change(schema.OpCreate, 1, `{"id":1,"note":"a"}`, 1, 1))
			batch := []pipeline.Change{change(schema.OpCreate, 2, `{"id":2,"note":"b"}`, 2, 2), change(schema.OpUpdate, 1, `{"id":1,"note":"c","Extra":5}`, 3, 3)}
			err := s.Apply(ctx, batch)
			if !errors.Is(err, pipeline.ErrSchemaChanged) || pipeline.IsPermanent(err) ||
				err.Error() != fmt.Sprintf(`mapping %s: source schema changed: events carry columns the target does not have (columns "Extra")`, table) {
				t.Fatalf("batch with a new column: %v", err)
			}
			if r := read(2); r != nil {
				t.Fatalf("a change of the refused batch was written: %v", r)
			}

			s = mustOpen(pipeline.Target{Columns: []pipeline.Column{id, note, extra}})
			apply(t, s, batch...)
			if r := read(1); r["Extra"] != "5" || r["note"] != "c" {
				t.Fatalf("row 1 after the column was added: %v", r)
			}
			if r := read(2); r["note"] != "b" {
				t.Fatalf("row 2: %v", r)
			}

			// note dropped at the source: rows without it go in.
			s = mustOpen(pipeline.Target{Columns: []pipeline.Column{id, extra}})
			apply(t, s, change(schema.OpCreate, 3, `{"id":3,"Extra":7}`, 4, 4))
			if r := read(3); r["Extra"] != "7" {
				t.Fatalf("row 3 after note was dropped: %v", r)
			}

			_, err = open(pipeline.Target{Columns: []pipeline.Column{id, extra, {Name: "k2", Source: "k2", SQLType: "integer", BaseType: "int4", Key: true}}})
			if !errors.Is(err, pipeline.ErrSchemaMismatch) || !strings.Contains(err.Error(), `key column "k2" is missing (the primary key changed: map the table to a new target)`) {
				t.Fatalf("new key column: %v", err)
			}
			retyped := extra
			retyped.SQLType, retyped.BaseType = "text", "text"
			_, err = open(pipeline.Target{Columns: []pipeline.Column{id, retyped}})
			want := fmt.Sprintf(`target table cannot take the source's columns: table "public"."%[1]s": column "Extra" is bigint but the source is text (fix: ALTER TABLE "public"."%[1]s" ALTER COLUMN "Extra" TYPE text USING "Extra"::text, or convert it in the mapping with columns.types)`, table)
			if kind == "cassandra" {
				want = fmt.Sprintf(`target table cannot take the source's columns: table "%[1]s"."%[2]s": column "Extra" is bigint but scoop writes text (fix: Cassandra cannot change a column's type: rename it in the mapping with columns.rename so scoop adds a new column, or ALTER TABLE "%[1]s"."%[2]s" DROP "Extra"; ALTER TABLE "%[1]s"."%[2]s" ADD "Extra" text and replay the mapping)`, keyspace, table)
			}
			if !errors.Is(err, pipeline.ErrSchemaMismatch) || !strings.Contains(fmt.Sprint(err), want) {
				t.Fatalf("retyped column:\n got %v\nwant %s", err, want)
			}
		})
	}
}

func readCassandra(t *testing.T, keyspace, table string, id int) map[string]string {
	cl := gocql.NewCluster("127.0.0.1")
	fmt.Sscan(testenv.CassandraPort, &cl.Port)
	sess, err := cl.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	m := map[string]any{}
	if err := sess.Query(fmt.Sprintf(`SELECT * FROM %q.%q WHERE id = ?`, keyspace, table), id).MapScan(m); err != nil {
		if err == gocql.ErrNotFound {
			return nil
		}
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}
