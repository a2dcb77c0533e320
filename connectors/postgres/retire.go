package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/schema"
)

// ReverseObjects reports whether a service database still has a reverse
// source's slot or publication.
func ReverseObjects(ctx context.Context, url, slot, publication string) (bool, error) {
	conn, err := connect(ctx, url)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database())
		+ (SELECT count(*) FROM pg_publication WHERE pubname = $2)`, slot, publication).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read reverse slot %s: %w", slot, err)
	}
	return n > 0, nil
}

// RetireReverse drops a service database's reverse slot (once no walsender
// uses it, waiting up to a minute) and publication: with no mapping of the
// store left in direction both, the slot would hold the service's WAL back
// for ever.
func RetireReverse(ctx context.Context, url, slot, publication string) error {
	conn, err := connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(time.Minute)
	for {
		var active bool
		err := conn.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		if errors.Is(err, pgx.ErrNoRows) {
			break
		}
		if err != nil {
			return fmt.Errorf("read reverse slot %s: %w", slot, err)
		}
		if !active {
			if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot); err != nil {
				return fmt.Errorf("drop reverse slot %s: %w", slot, err)
			}
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("reverse slot %s is still in use after a minute; an instance still runs its reverse source", slot)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if _, err := conn.Exec(ctx, `DROP PUBLICATION IF EXISTS `+schema.QuoteIdent(publication)); err != nil {
		return fmt.Errorf("drop reverse publication %s: %w", publication, err)
	}
	return nil
}
