package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsConflictRetry reports whether a failed apply lost a race with another
// writer of the same rows and is retried for that reason: a deadlock, a
// serialization failure, or the conflict guard of a direction-both table
// (which raises a serialization failure when the row was written while
// scoop applied an older change to it).
func IsConflictRetry(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}
