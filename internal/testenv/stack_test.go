package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gocql/gocql"
	kafkago "github.com/segmentio/kafka-go"
)

// The stack is real: these tests talk to the servers scripts/stack started.

func TestPostgresIsReal(t *testing.T) {
	Require(t)
	c := Conn(t, "monolith")
	var walLevel, commitTs string
	if err := c.QueryRow(context.Background(), `SELECT current_setting('wal_level'), current_setting('track_commit_timestamp')`).Scan(&walLevel, &commitTs); err != nil {
		t.Fatal(err)
	}
	if walLevel != "logical" || commitTs != "on" {
		t.Fatalf("wal_level=%s track_commit_timestamp=%s, want logical and on", walLevel, commitTs)
	}
	table := Name("stack")
	Exec(t, c, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, v text)`, table))
	Exec(t, c, fmt.Sprintf(`INSERT INTO %s VALUES (1, 'written')`, table))
	var v string
	if err := c.QueryRow(context.Background(), fmt.Sprintf(`SELECT v FROM %s WHERE id = 1`, table)).Scan(&v); err != nil || v != "written" {
		t.Fatalf("read back %q, %v", v, err)
	}
	s := Conn(t, "service")
	if err := s.QueryRow(context.Background(), `SELECT current_database()`).Scan(&v); err != nil || v != "service" {
		t.Fatalf("service database: %q, %v", v, err)
	}
}

func TestKafkaIsReal(t *testing.T) {
	Require(t)
	topic := Name("stack")
	w := &kafkago.Writer{Addr: kafkago.TCP(Broker()), Topic: topic, AllowAutoTopicCreation: true, RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for i := 0; i < 20; i++ { // the first write may race the topic's creation
		if err = w.WriteMessages(ctx, kafkago.Message{Key: []byte("k"), Value: []byte("hello")}); err == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	msgs := ReadTopic(t, topic, 1, 10*time.Second)
	if len(msgs) != 1 || string(msgs[0].Value) != "hello" {
		t.Fatalf("consumed %v", msgs)
	}
}

func TestCassandraIsReal(t *testing.T) {
	Require(t)
	cl := gocql.NewCluster("127.0.0.1")
	fmt.Sscan(CassandraPort, &cl.Port)
	cl.Timeout = 10 * time.Second
	s, err := cl.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var version string
	if err := s.Query(`SELECT release_version FROM system.local`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	t.Logf("Cassandra %s", version)
	ks := Name("stack")
	if err := s.Query(fmt.Sprintf(`CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`, ks)).Exec(); err != nil {
		t.Fatal(err)
	}
	defer s.Query(fmt.Sprintf(`DROP KEYSPACE %s`, ks)).Exec()
	if err := s.Query(fmt.Sprintf(`CREATE TABLE %s.t (id int PRIMARY KEY, v text)`, ks)).Exec(); err != nil {
		t.Fatal(err)
	}
	if err := s.Query(fmt.Sprintf(`INSERT INTO %s.t (id, v) VALUES (1, 'written')`, ks)).Exec(); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := s.Query(fmt.Sprintf(`SELECT v FROM %s.t WHERE id = 1`, ks)).Scan(&v); err != nil || v != "written" {
		t.Fatalf("read back %q, %v", v, err)
	}
}
