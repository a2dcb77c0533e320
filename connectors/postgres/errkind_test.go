package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// TestIsConflictRetry: a deadlock and a serialization failure produced by
// the real server are conflicts; a refused connection and a constraint
// violation are not.
func TestIsConflictRetry(t *testing.T) {
	testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	table := testenv.Name("conflict")
	setup := testenv.Conn(t, "monolith")
	testenv.Exec(t, setup, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, v int)`, schema.QuoteIdent(table)))
	testenv.Exec(t, setup, fmt.Sprintf(`INSERT INTO %s VALUES (1, 0), (2, 0)`, schema.QuoteIdent(table)))
	update := fmt.Sprintf(`UPDATE %s SET v = v + 1 WHERE id = $1`, schema.QuoteIdent(table))

	// Two transactions lock rows 1 and 2 in opposite orders.
	a, b := testenv.Conn(t, "monolith"), testenv.Conn(t, "monolith")
	ta, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ta.Rollback(ctx)
	tb, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Rollback(ctx)
	if _, err := ta.Exec(ctx, update, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Exec(ctx, update, 2); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, c := range []struct {
		tx  pgx.Tx
		row int
	}{{ta, 2}, {tb, 1}} {
		go func() {
			_, err := c.tx.Exec(ctx, update, c.row)
			if err != nil {
				c.tx.Rollback(ctx) // lets the other one through
			}
			errs <- err
		}()
	}
	var deadlock error
	for range 2 {
		if err := <-errs; err != nil {
			deadlock = err
		}
	}
	if deadlock == nil || !IsConflictRetry(fmt.Errorf("apply batch: %w", deadlock)) {
		t.Fatalf("deadlock: %v: not a conflict", deadlock)
	}
	ta.Rollback(ctx)
	tb.Rollback(ctx)

	// A serializable transaction that lost to a concurrent one.
	s1, s2 := testenv.Conn(t, "monolith"), testenv.Conn(t, "monolith")
	t1, err := s1.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		t.Fatal(err)
	}
	defer t1.Rollback(ctx)
	var v int
	if err := t1.QueryRow(ctx, fmt.Sprintf(`SELECT v FROM %s WHERE id = 1`, schema.QuoteIdent(table))).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Exec(ctx, update, 1); err != nil {
		t.Fatal(err)
	}
	_, serial := t1.Exec(ctx, update, 1)
	if serial == nil || !IsConflictRetry(serial) {
		t.Fatalf("serialization failure: %v: not a conflict", serial)
	}

	_, dup := setup.Exec(ctx, fmt.Sprintf(`INSERT INTO %s VALUES (1, 0)`, schema.QuoteIdent(table)))
	if dup == nil || IsConflictRetry(dup) {
		t.Fatalf("unique violation: %v: counted as a conflict", dup)
	}
	_, refused := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:1/monolith?sslmode=disable")
	if refused == nil || IsConflictRetry(refused) || IsConflictRetry(nil) || IsConflictRetry(errors.New("40001")) {
		t.Fatalf("refused connection %v counted as a conflict", refused)
	}
}
