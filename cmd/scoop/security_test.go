package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCassandraTLSIsNeverIgnored: SCOOP_CASSANDRA_TLS=1 against the stack's
// plaintext Cassandra must fail the handshake and pause the mapping, never
// fall back to plaintext (it used to compare the raw variable with "true").
func TestCassandraTLSIsNeverIgnored(t *testing.T) {
	table := createTable(t, 5)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: tls-cass\n    source: public.%s\n    store: orders\n", table))
	d := startProc(t, append(e.env, "SCOOP_CASSANDRA_TLS=1"))
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(d.logs(), `msg="mapping paused; retrying" mapping=tls-cass`) {
		if time.Now().After(deadline) {
			t.Fatalf("the mapping was not paused by a failed TLS handshake:\n%s", tail(d.logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := wideKeyspaceTables(t, e.keyspace); got != 0 {
		t.Fatalf("scoop reached Cassandra in plaintext (%d tables in %s) although TLS was asked for", got, e.keyspace)
	}
}

// wideKeyspaceTables counts the tables of a keyspace (0 when it is missing).
func wideKeyspaceTables(t *testing.T, keyspace string) int {
	s := cassandraSession(t, "system_schema")
	var n int
	if err := s.Query(`SELECT count(*) FROM tables WHERE keyspace_name = ?`, keyspace).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
