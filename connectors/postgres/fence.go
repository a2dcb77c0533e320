package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/schema"
)

// A fence makes one side of a mapping with direction: both read-only for
// applications: a trigger that refuses every INSERT, UPDATE, DELETE and
// TRUNCATE of a transaction that is not a scoop apply (scoop's sinks set
// scoop.applying, see Conflict). The cutover (`scoop mappings flip`) fences
// the side that gives the table up, then waits until scoop has carried
// everything written before the fence to the other side.
//
// CREATE TRIGGER takes a lock that conflicts with every writer of the
// table, so it waits for the transactions writing it to end, and a writer
// that comes after it sees the trigger: every application write commits
// before the fence's commit (and is in the WAL before FenceLSN) or fails.

// fenceTrigger is the trigger's name on a fenced table.
const fenceTrigger = "scoop_fence"

// fenceSetup creates the trigger function (idempotent; under prepare's
// lock). Its arguments are the error's message and hint. A statement-level
// trigger fires once per statement and also for TRUNCATE; its return value
// is ignored.
const fenceSetup = `
CREATE SCHEMA IF NOT EXISTS scoop;
CREATE OR REPLACE FUNCTION scoop.fence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF coalesce(current_setting('scoop.applying', true), '') <> '' THEN
		RETURN NULL;
	END IF;
	RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction', MESSAGE = TG_ARGV[0], HINT = TG_ARGV[1];
END $$;`

// Fence is one fenced table.
type Fence struct {
	URL     string    // the database
	Table   TableName // the table
	Message string    // the error an application's write gets
	Hint    string    // what to do about it
}

// Install creates the fence (replacing one already there) and returns the
// database's WAL position right after it committed: every application
// write of the table committed before that position.
func (f *Fence) Install(ctx context.Context) (uint64, error) {
	conn, err := connect(ctx, f.URL)
	if err != nil {
		return 0, fmt.Errorf("fence %s: %w", f.Table, err)
	}
	defer conn.Close(context.Background())
	if err := prepare(ctx, conn, "install scoop.fence()", fenceSetup); err != nil {
		return 0, err
	}
	table := schema.QuoteQualified(f.Table.Schema, f.Table.Name)
	// ALWAYS: the fence holds for sessions with session_replication_role
	// = replica too.
	ddl := fmt.Sprintf(`CREATE OR REPLACE TRIGGER %[1]s BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %[2]s
			FOR EACH STATEMENT EXECUTE FUNCTION scoop.fence(%[3]s, %[4]s);
		ALTER TABLE %[2]s ENABLE ALWAYS TRIGGER %[1]s`,
		schema.QuoteIdent(fenceTrigger), table, schema.QuoteLiteral(f.Message), schema.QuoteLiteral(f.Hint))
	if err := prepare(ctx, conn, "fence "+f.Table.String(), ddl); err != nil {
		return 0, err
	}
	var lsn int64
	if err := conn.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0')::int8`).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("fence %s: read the WAL position: %w", f.Table, err)
	}
	return uint64(lsn), nil
}

// RemoveFence drops the fence of table in the database at url (nothing
// when there is none).
func RemoveFence(ctx context.Context, url string, table TableName) error {
	conn, err := connect(ctx, url)
	if err != nil {
		return fmt.Errorf("remove the fence of %s: %w", table, err)
	}
	defer conn.Close(context.Background())
	ddl := fmt.Sprintf(`DROP TRIGGER IF EXISTS %s ON %s`, schema.QuoteIdent(fenceTrigger), schema.QuoteQualified(table.Schema, table.Name))
	return prepare(ctx, conn, "remove the fence of "+table.String(), ddl)
}

// Fenced says whether table in the database at url has a fence.
func Fenced(ctx context.Context, url string, table TableName) (bool, error) {
	conn, err := connect(ctx, url)
	if err != nil {
		return false, fmt.Errorf("look for the fence of %s: %w", table, err)
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgname = $1
		AND tgrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $2 AND c.relname = $3)`,
		fenceTrigger, table.Schema, table.Name).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look for the fence of %s: %w", table, err)
	}
	return n > 0, nil
}

// ErrFlipRunning is returned by LockFlip while another flip of the mapping runs.
var ErrFlipRunning = errors.New("another flip of the mapping is running")

// LockFlip takes the session advisory lock of mapping's flips in the
// monolith (deployment slot), so that two flips of one mapping never
// interleave; it fails at once with ErrFlipRunning when another holds it.
// unlock releases it (closing the session would too).
func LockFlip(ctx context.Context, url, slot, mapping string) (unlock func(), err error) {
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("lock the flip of mapping %s: %w", mapping, err)
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, FlipLockKey(slot, mapping)).Scan(&got); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("lock the flip of mapping %s: %w", mapping, err)
	}
	if !got {
		conn.Close(context.Background())
		return nil, fmt.Errorf("%w: mapping %s is being flipped by another scoop mappings flip (it holds the advisory lock hashtext(%s) in the monolith); wait for it to end, or stop it", ErrFlipRunning, mapping, schema.QuoteLiteral(FlipLockKey(slot, mapping)))
	}
	return func() { conn.Close(context.Background()) }, nil
}

// FlipLockKey is the text whose hashtext is the advisory lock of a
// mapping's flips.
func FlipLockKey(slot, mapping string) string { return "scoop.flip." + slot + "." + mapping }

// ErrNoSlot is returned by ConfirmedLSN for a slot the database does not have.
var ErrNoSlot = errors.New("replication slot does not exist")

// ConfirmedLSN reads a slot's confirmed_flush_lsn: the source has
// delivered every transaction that committed before it.
func ConfirmedLSN(ctx context.Context, url, slot string) (uint64, error) {
	conn, err := connect(ctx, url)
	if err != nil {
		return 0, fmt.Errorf("read slot %s: %w", slot, err)
	}
	defer conn.Close(context.Background())
	var lsn *int64
	err = conn.QueryRow(ctx, `SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&lsn)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("read slot %s: %w", slot, ErrNoSlot)
	}
	if err != nil {
		return 0, fmt.Errorf("read slot %s: %w", slot, err)
	}
	if lsn == nil {
		return 0, nil
	}
	return uint64(*lsn), nil
}

// LSNText writes an LSN as PostgreSQL does (X/Y, hexadecimal).
func LSNText(lsn uint64) string { return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)) }

// Owners of a mapping with direction: both: the side applications write.
const (
	OwnerMonolith = "monolith"
	OwnerService  = "service"
)

// Ownership is who owns a mapping's table, as `scoop mappings flip` last
// recorded it (the monolith when it never ran).
type Ownership struct {
	Owner     string
	FenceLSN  string // the fence the change waited for ("" when none)
	ChangedAt time.Time
}

// ownersSetup creates the ownership table of the monolith (under
// prepare's lock).
const ownersSetup = `
CREATE SCHEMA IF NOT EXISTS scoop;
CREATE TABLE IF NOT EXISTS scoop.owners (
	slot       text NOT NULL,
	mapping    text NOT NULL,
	owner      text NOT NULL,
	fence_lsn  pg_lsn,
	changed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (slot, mapping))`

// Owners returns the recorded owners of the deployment's mappings (slot),
// by mapping; a mapping absent is owned by the monolith. It creates
// nothing: without the table, nothing was ever flipped.
func Owners(ctx context.Context, url, slot string) (map[string]Ownership, error) {
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("read the mappings' owners: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('scoop.owners') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read the mappings' owners: %w", err)
	}
	out := map[string]Ownership{}
	if !exists {
		return out, nil
	}
	rows, err := conn.Query(ctx, `SELECT mapping, owner, coalesce(fence_lsn::text, ''), changed_at FROM scoop.owners WHERE slot = $1`, slot)
	if err != nil {
		return nil, fmt.Errorf("read the mappings' owners: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var o Ownership
		if err := rows.Scan(&name, &o.Owner, &o.FenceLSN, &o.ChangedAt); err != nil {
			return nil, fmt.Errorf("read the mappings' owners: %w", err)
		}
		out[name] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the mappings' owners: %w", err)
	}
	return out, nil
}

// SetOwner records owner as the owner of mapping, reached by waiting for
// the fence at fenceLSN.
func SetOwner(ctx context.Context, url, slot, mapping, owner string, fenceLSN uint64) error {
	conn, err := connect(ctx, url)
	if err != nil {
		return fmt.Errorf("record the owner of mapping %s: %w", mapping, err)
	}
	defer conn.Close(context.Background())
	if err := prepare(ctx, conn, "prepare scoop.owners in the monolith", ownersSetup); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `INSERT INTO scoop.owners (slot, mapping, owner, fence_lsn, changed_at) VALUES ($1, $2, $3, $4::text::pg_lsn, now())
		ON CONFLICT (slot, mapping) DO UPDATE SET owner = EXCLUDED.owner, fence_lsn = EXCLUDED.fence_lsn, changed_at = EXCLUDED.changed_at`,
		slot, mapping, owner, LSNText(fenceLSN))
	if err != nil {
		return fmt.Errorf("record the owner of mapping %s: %w", mapping, err)
	}
	return nil
}
