package servicewriter_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/scoop-cdc/scoop/connectors/cassandra/servicewriter"
	"github.com/scoop-cdc/scoop/internal/testenv"
)

// A service that owns the Cassandra table of the mapping "customers-example"
// (direction: both) writes through the writer: each write is published to
// scoop.reverse.customers-example, then stored in Cassandra at the event's
// timestamp. It runs against the stack of scripts/stack (Kafka on 9092,
// Cassandra on 9042): go test -run TestExample ./connectors/cassandra/servicewriter
func Example() {
	ctx := context.Background()
	cluster := gocql.NewCluster("127.0.0.1")
	cluster.Port = 9042
	cluster.Consistency = gocql.LocalQuorum
	session, err := cluster.CreateSession()
	if err != nil {
		log.Fatal(err)
	}
	defer session.Close()
	// The service's own schema (here created on the spot).
	for _, cql := range []string{
		`CREATE KEYSPACE IF NOT EXISTS servicewriter_example WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
		`CREATE TABLE IF NOT EXISTS servicewriter_example.customers (id bigint PRIMARY KEY, email text, vip boolean, since timestamp)`,
	} {
		if err := session.Query(cql).Exec(); err != nil {
			log.Fatal(err)
		}
	}

	w, err := servicewriter.New(ctx, servicewriter.Config{
		Brokers:     []string{"127.0.0.1:9092"},
		TopicPrefix: "scoop", // scoop's SCOOP_TOPIC_PREFIX
		Mapping:     "customers-example",
		Session:     session,
		Keyspace:    "servicewriter_example",
		Table:       "customers",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.Close(ctx)
	}()

	// Upsert takes the whole row; nil is NULL.
	err = w.Upsert(ctx, map[string]any{
		"id": int64(42), "email": "ada@example.com", "vip": true,
		"since": time.Date(2024, 5, 1, 9, 30, 0, 0, time.UTC),
	})
	switch {
	case servicewriter.IsPublished(err):
		// In the log, so scoop writes it to Cassandra and the monolith:
		// the change is durable; only the local write failed.
		log.Print(err)
	case err != nil:
		log.Fatal(err) // nothing was written to Cassandra: retry or fail the request
	}
	var email string
	if err := session.Query(`SELECT email FROM servicewriter_example.customers WHERE id = 42`).Scan(&email); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored", email, "and published to", w.Topic())

	if err := w.Delete(ctx, map[string]any{"id": int64(42)}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted 42")
}

// TestExample runs Example against the stack and checks what it printed.
func TestExample(t *testing.T) {
	testenv.Require(t)
	t.Cleanup(func() {
		cl := gocql.NewCluster("127.0.0.1")
		if s, err := cl.CreateSession(); err == nil {
			s.Query(`DROP KEYSPACE IF EXISTS servicewriter_example`).Exec()
			s.Close()
		}
	})
	if testenv.KafkaPort != "9092" || testenv.CassandraPort != "9042" {
		t.Skip("Example uses the stack's default ports")
	}
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = wr
	Example()
	os.Stdout = stdout
	wr.Close()
	out, _ := io.ReadAll(r)
	want := "stored ada@example.com and published to scoop.reverse.customers-example\ndeleted 42\n"
	if string(out) != want {
		t.Fatalf("Example printed %q, want %q", out, want)
	}
}
