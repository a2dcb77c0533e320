package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// freshDatabase creates an empty database on the stack's PostgreSQL (no
// schema scoop yet), dropped when the test ends.
func freshDatabase(t *testing.T) string {
	t.Helper()
	admin := testenv.Conn(t, "postgres")
	name := testenv.Name("prep")
	testenv.Exec(t, admin, "CREATE DATABASE "+schema.QuoteIdent(name))
	t.Cleanup(func() {
		admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+schema.QuoteIdent(name)+" WITH (FORCE)")
	})
	return name
}

// Instances started at the same moment prepare scoop's state in the
// monolith (registry, state tables, truncate barriers) and in a service
// store (sink offsets, target table, replication origins) at once: every
// one of them succeeds. Without the preparation lock, concurrent
// CREATE SCHEMA/TABLE IF NOT EXISTS fail with 23505 on the catalog.
func TestPrepareConcurrently(t *testing.T) {
	testenv.Require(t)
	ctx := context.Background()
	origin := testenv.Name("o")
	admin := testenv.Conn(t, "postgres")
	t.Cleanup(func() {
		admin.Exec(ctx, `SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname = $1 OR roname LIKE $1 || '\_%'`, origin)
	})
	target := pipeline.Target{Table: "race", Columns: []pipeline.Column{
		{Name: "id", Source: "id", SQLType: "integer", BaseType: "int4", Key: true},
		{Name: "note", Source: "note", SQLType: "text", BaseType: "text"},
	}}
	const instances = 6
	for round := 0; round < 3; round++ {
		db := freshDatabase(t)
		url := testenv.PGURL(db)
		start := make(chan struct{})
		errs := make(chan error, 4*instances)
		var wg sync.WaitGroup
		run := func(what string, fn func() error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := fn(); err != nil {
					errs <- fmt.Errorf("round %d: %s: %w", round, what, err)
				}
			}()
		}
		for i := 0; i < instances; i++ {
			run("registry", func() error {
				r := NewRegistry(url, "slot")
				defer r.Close()
				_, _, err := r.List(ctx)
				return err
			})
			run("state tables", func() error {
				r := NewRegistry(url, "slot")
				defer r.Close()
				_, err := r.Snapshotted(ctx, TableName{"public", "t"})
				return err
			})
			run("truncate barriers", func() error {
				b, err := NewTruncateBarriers(ctx, url)
				if err == nil {
					b.Close()
				}
				return err
			})
			run("sink", func() error {
				s, err := NewSink(ctx, SinkConfig{URL: url, Mapping: "race", Topic: "race", Target: target, Origin: origin})
				if err == nil {
					s.Close(ctx)
				}
				return err
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}
