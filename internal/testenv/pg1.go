package testenv

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// PG1 is a private PostgreSQL cluster of one test (scripts/stack under a
// stack directory of its own, on a port of its own, with the databases
// monolith and service), for tests that change server settings such as
// max_slot_wal_keep_size: the stack's shared cluster is left alone.
type PG1 struct {
	port int
	env  []string
}

// StartPG1 brings a private cluster up and kills it when the test ends.
func StartPG1(t testing.TB) *PG1 {
	t.Helper()
	Require(t)
	dir, err := os.MkdirTemp("", "scoop-pg1-")
	if err != nil {
		t.Fatal(err)
	}
	// The cluster runs as the postgres user, who must reach its directory.
	os.Chmod(dir, 0o755)
	p := &PG1{port: freePortPair(t), env: []string{"SCOOP_STACK_DIR=" + dir}}
	p.env = append(p.env, "SCOOP_PG_PORT="+strconv.Itoa(p.port))
	t.Cleanup(func() {
		if err := p.stack("kill", "pg"); err != nil {
			t.Errorf("stop the private PostgreSQL: %v", err)
		}
		os.RemoveAll(dir)
	})
	start := time.Now()
	if err := p.stack("up", "pg"); err != nil {
		t.Fatal(err)
	}
	t.Logf("private PostgreSQL on port %d up in %s", p.port, time.Since(start).Round(100*time.Millisecond))
	return p
}

// URL is the URL of one of the cluster's databases.
func (p *PG1) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

func (p *PG1) stack(args ...string) error { return stackWith("private PostgreSQL", p.env, args...) }
