package cassandra_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/scoop-cdc/scoop/connectors/cassandra"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// TestUnknownTableIsRetried: a write to a table or column the store does
// not know (yet) fails without being permanent, so the mapping pauses and
// retries instead of dead-lettering the change; once the store knows the
// table again the same write goes through. Bad data stays permanent.
func TestUnknownTableIsRetried(t *testing.T) {
	testenv.Require(t)
	keyspace, table := testenv.Name("live"), "orders"
	target := pipeline.Target{Table: table, Columns: []pipeline.Column{
		{Name: "id", Source: "id", SQLType: "integer", BaseType: "int4", Key: true},
		{Name: "note", Source: "note", SQLType: "text", BaseType: "text"},
	}}
	ctx := context.Background()
	sink, err := cassandra.NewSink(ctx, cassandra.SinkConfig{URL: "cassandra://" + testenv.CassandraAddr() + "/" + keyspace, Mapping: "live", Target: target})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(ctx)
	cl := gocql.NewCluster("127.0.0.1")
	fmt.Sscan(testenv.CassandraPort, &cl.Port)
	cl.Timeout = 10 * time.Second
	admin, err := cl.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	defer admin.Query("DROP KEYSPACE IF EXISTS " + schema.QuoteIdent(keyspace)).Exec()
	qt := schema.QuoteIdent(keyspace) + "." + schema.QuoteIdent(table)
	ddl := func(q string) {
		t.Helper()
		if err := admin.Query(q).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	insert := func(id int, after string) []pipeline.Change {
		c := pipeline.Change{Op: schema.OpCreate, Key: map[string]json.RawMessage{"id": json.RawMessage(fmt.Sprint(id))},
			CommitTime: time.Now(), Topic: "live", Offset: int64(id)}
		json.Unmarshal([]byte(after), &c.After)
		return []pipeline.Change{c}
	}
	if err := sink.Apply(ctx, insert(1, `{"id":1,"note":"a"}`)); err != nil {
		t.Fatal(err)
	}

	ddl("DROP TABLE " + qt)
	err = sink.Apply(ctx, insert(2, `{"id":2,"note":"b"}`))
	if err == nil || pipeline.IsPermanent(err) || !strings.Contains(err.Error(), "the store does not know the table or a column yet") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("write to a table the store does not know: %v (permanent %v), want a retried error that says so", err, pipeline.IsPermanent(err))
	}
	ddl("CREATE TABLE " + qt + " (id int PRIMARY KEY)")
	err = sink.Apply(ctx, insert(2, `{"id":2,"note":"b"}`))
	if err == nil || pipeline.IsPermanent(err) || !strings.Contains(err.Error(), "Undefined column name note") {
		t.Fatalf("write to a column the store does not know: %v (permanent %v), want a retried error that says so", err, pipeline.IsPermanent(err))
	}
	ddl("ALTER TABLE " + qt + " ADD note text")
	if err := sink.Apply(ctx, insert(2, `{"id":2,"note":"b"}`)); err != nil {
		t.Fatalf("the store knows the table again: %v", err)
	}
	var note string
	if err := admin.Query("SELECT note FROM " + qt + " WHERE id = 2").Scan(&note); err != nil || note != "b" {
		t.Fatalf("row 2: %q %v", note, err)
	}
	// A value the store refuses is still permanent: it goes to the
	// dead-letter topic.
	err = sink.Apply(ctx, insert(3, `{"id":null,"note":"c"}`))
	if !pipeline.IsPermanent(err) || !strings.Contains(err.Error(), "id") {
		t.Fatalf("a null key: %v (permanent %v), want permanent", err, pipeline.IsPermanent(err))
	}
}
