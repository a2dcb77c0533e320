package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// prepareLock names the advisory lock under which scoop creates its own
// objects in a database (schema scoop and its tables, a sink's target).
const prepareLock = "scoop.prepare"

// prepare runs ddl, idempotent statements that create scoop's objects or
// bring them up to date, in one transaction holding a transaction-scoped
// advisory lock. CREATE SCHEMA/TABLE IF NOT EXISTS are not safe under
// concurrency in PostgreSQL: two sessions can both find a name free and one
// then fails on the catalog's unique index (23505), which is what instances
// started together used to hit. Under the lock they run one after another,
// and the later one finds the objects made. Every preparation of scoop's
// state goes through here; what prefixes the error. With args, ddl is one
// statement. The lock is per database (replication origins, which are per
// cluster, are serialized per database only).
func prepare(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, what, ddl string, args ...any) error {
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, prepareLock); err != nil {
			return fmt.Errorf("wait for the preparation lock: %w", err)
		}
		// A statement after the lock reads the catalog as the previous
		// holder committed it.
		_, err := tx.Exec(ctx, ddl, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
