package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// A mapping with direction: both is written on two sides, the monolith and
// the service store, and each side applies the other's changes. Both sides
// keep, for each row, the version of its last write: the time of that
// write at the side it was made on, and the side. A change is applied only
// if it is newer than the row's version (last writer wins; at the same
// microsecond the monolith's write wins), so both sides end with the write
// that is newest everywhere, whatever order the changes arrive in.
//
// The version of a row is read, not stored, where PostgreSQL can tell it:
//   - a row an application wrote: the commit time of its xmin
//     (track_commit_timestamp = on);
//   - a row scoop wrote: scoop.row_versions, written in the same
//     transaction (so its xmin equals the row's);
//   - a deleted row: scoop.row_versions with deleted = true, written by
//     scoop's delete or, for an application's delete, by the trigger
//     scoop.note_delete (its own xmin's commit time).

// OriginPrefix is the prefix of the transactional logical message by which
// a scoop apply marks its transaction with its flow (pipeline.OriginHeader);
// a source reading the database puts the flow on the transaction's events.
const OriginPrefix = "scoop-origin"

// Sides of a mapping with direction: both.
const (
	SideMonolith = "monolith"
	SideService  = "service"
)

// Conflict configures a sink of a mapping with direction: both.
type Conflict struct {
	// Side is the side this sink writes; changes come from the other one.
	Side string
	// Tag names the flow (pipeline.ForwardOrigin or ReverseOrigin): set as
	// scoop.applying in every transaction (scoop's triggers let those
	// writes through) and, when the sink applies without a replication
	// origin, written as an OriginPrefix message.
	Tag string
}

func (c *Conflict) changeSide() string {
	if c.Side == SideMonolith {
		return SideService
	}
	return SideMonolith
}

// lwwSetup creates the version table, the comparison function and the
// delete trigger's function (idempotent; under prepare's lock).
const lwwSetup = `
CREATE SCHEMA IF NOT EXISTS scoop;
CREATE TABLE IF NOT EXISTS scoop.row_versions (
	tbl     text    NOT NULL,
	key     jsonb   NOT NULL,
	ts      bigint,
	side    text    NOT NULL,
	deleted boolean NOT NULL,
	PRIMARY KEY (tbl, key));
CREATE OR REPLACE FUNCTION scoop.commit_us(x xid) RETURNS bigint LANGUAGE sql STABLE AS
	$$ SELECT (extract(epoch FROM pg_xact_commit_timestamp(x)) * 1000000)::bigint $$;
CREATE OR REPLACE FUNCTION scoop.lww_wins(row_xmin xid, t text, k jsonb, ts bigint, side text, local_side text)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_ts bigint; v_side text; v_xmin xid; found_v boolean;
	cur_ts bigint; cur_side text;
BEGIN
	SELECT r.ts, r.side, r.xmin INTO v_ts, v_side, v_xmin FROM scoop.row_versions r WHERE r.tbl = t AND r.key = k;
	found_v := FOUND;
	IF row_xmin IS NULL THEN
		IF NOT found_v THEN RETURN true; END IF;
		cur_ts := coalesce(v_ts, scoop.commit_us(v_xmin)); cur_side := v_side;
	ELSIF found_v AND v_xmin = row_xmin THEN
		cur_ts := coalesce(v_ts, scoop.commit_us(row_xmin)); cur_side := v_side;
	ELSE
		cur_ts := scoop.commit_us(row_xmin); cur_side := local_side;
	END IF;
	-- NULL: written by this transaction, or older than the commit times
	-- PostgreSQL keeps.
	IF cur_ts IS NULL THEN RETURN true; END IF;
	RETURN ts > cur_ts OR (ts = cur_ts AND (side = cur_side OR side = 'monolith'));
END $$;
CREATE OR REPLACE FUNCTION scoop.lww_guard(old_ts bigint, old_side text, old_xmin xid, ts bigint, side text)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE cur bigint;
BEGIN
	cur := coalesce(old_ts, scoop.commit_us(old_xmin));
	IF cur IS NULL OR ts > cur OR (ts = cur AND (side = old_side OR side = 'monolith')) THEN
		RETURN true;
	END IF;
	RAISE EXCEPTION 'scoop: the row was written while scoop applied an older change to it; retrying'
		USING ERRCODE = '40001';
END $$;
CREATE OR REPLACE FUNCTION scoop.note_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF coalesce(current_setting('scoop.applying', true), '') <> '' THEN
		RETURN NULL;
	END IF;
	INSERT INTO scoop.row_versions (tbl, key, ts, side, deleted)
	SELECT TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, jsonb_object_agg(k, to_jsonb(OLD) -> k), NULL, TG_ARGV[0], true
	FROM unnest(TG_ARGV[1:]) AS k
	ON CONFLICT (tbl, key) DO UPDATE SET ts = NULL, side = EXCLUDED.side, deleted = true;
	RETURN NULL;
END $$;`

// prepareConflict checks track_commit_timestamp and installs the version
// table, functions and the delete trigger on the target table.
func (s *Sink) prepareConflict(ctx context.Context) error {
	var on string
	if err := s.conn.QueryRow(ctx, `SHOW track_commit_timestamp`).Scan(&on); err != nil {
		return fmt.Errorf("mapping %s: read track_commit_timestamp: %w", s.cfg.Mapping, err)
	}
	if on != "on" {
		return fmt.Errorf("mapping %s: direction both needs track_commit_timestamp = on in the %s's PostgreSQL (it dates each row's last write; set it in postgresql.conf and restart the server)", s.cfg.Mapping, s.cfg.Conflict.Side)
	}
	if err := prepare(ctx, s.conn, "mapping "+s.cfg.Mapping+": install the conflict functions in schema scoop", lwwSetup); err != nil {
		return err
	}
	args := []string{schema.QuoteLiteral(s.cfg.Conflict.Side)}
	for _, k := range s.keys {
		args = append(args, schema.QuoteLiteral(k.Name))
	}
	trigger := "scoop_note_delete"
	ddl := fmt.Sprintf(`DROP TRIGGER IF EXISTS %[1]s ON %[2]s;
		CREATE TRIGGER %[1]s AFTER DELETE ON %[2]s FOR EACH ROW EXECUTE FUNCTION scoop.note_delete(%[3]s)`,
		schema.QuoteIdent(trigger), s.table, strings.Join(args, ", "))
	return prepare(ctx, s.conn, "mapping "+s.cfg.Mapping+": install the delete trigger on "+s.table, ddl)
}

// beginConflict marks the transaction as scoop's.
func (s *Sink) beginConflict(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT set_config('scoop.applying', $1, true)`, s.cfg.Conflict.Tag); err != nil {
		return fmt.Errorf("mark the transaction as scoop's: %w", err)
	}
	if s.cfg.NoOrigin {
		if _, err := tx.Exec(ctx, `SELECT pg_logical_emit_message(true, $1, $2)`, OriginPrefix, s.cfg.Conflict.Tag); err != nil {
			return fmt.Errorf("mark the transaction with its flow (needs EXECUTE on pg_logical_emit_message): %w", err)
		}
	}
	return nil
}

// queueConflict adds the statement applying one change if it is newer than
// the row's version, and recording its version when it was.
func (s *Sink) queueConflict(b *pgx.Batch, c *pipeline.Change) error {
	if c.Op == schema.OpTruncate {
		b.Queue("TRUNCATE " + s.table)
		b.Queue(`DELETE FROM scoop.row_versions WHERE tbl = $1`, s.versionTable())
		return nil
	}
	var args []any
	param := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	tbl := param(s.versionTable())
	ts := param(c.CommitTime.UnixMicro())
	side := param(s.cfg.Conflict.changeSide())
	local := param(s.cfg.Conflict.Side)
	keyParts := make([]string, len(s.keys))
	where := make([]string, len(s.keys))
	keyParam := map[string]string{}
	for i, k := range s.keys {
		raw := c.Key[k.Name]
		if raw == nil {
			raw = c.After[k.Name]
		}
		v, err := pgText(k, raw)
		if err != nil {
			return fmt.Errorf("key %q: %w", k.Name, err)
		}
		p := "CAST(" + param(v) + " AS " + k.SQLType + ")"
		keyParam[k.Name] = p
		keyParts[i] = schema.QuoteLiteral(k.Name) + ", " + p
		where[i] = "cur." + schema.QuoteIdent(k.Name) + " = " + p
	}
	key := "jsonb_build_object(" + strings.Join(keyParts, ", ") + ")"
	wins := func(xmin string) string {
		return fmt.Sprintf("scoop.lww_wins(%s, %s, %s, %s, %s, %s)", xmin, tbl, key, ts, side, local)
	}
	version := func(deleted bool) string {
		return fmt.Sprintf(`INSERT INTO scoop.row_versions (tbl, key, ts, side, deleted) SELECT %s, %s, %s, %s, %t`, tbl, key, ts, side, deleted)
	}
	// The check above read a snapshot: an application's delete of the key
	// that committed since (its trigger wrote the version) would let an
	// older insert through. The version's write sees it, and fails the
	// batch, which is retried.
	const onVersion = ` ON CONFLICT (tbl, key) DO UPDATE SET ts = EXCLUDED.ts, side = EXCLUDED.side, deleted = EXCLUDED.deleted
		WHERE scoop.lww_guard(scoop.row_versions.ts, scoop.row_versions.side, scoop.row_versions.xmin, EXCLUDED.ts, EXCLUDED.side)`
	rowExists := "EXISTS (SELECT 1 FROM " + s.table + " cur WHERE " + strings.Join(where, " AND ") + ")"
	if c.Op == schema.OpDelete {
		sql := fmt.Sprintf(`WITH d AS (DELETE FROM %s cur WHERE %s AND %s RETURNING 1) %s WHERE EXISTS (SELECT 1 FROM d) OR (NOT %s AND %s)%s`,
			s.table, strings.Join(where, " AND "), wins("cur.xmin"), version(true), rowExists, wins("NULL"), onVersion)
		b.Queue(sql, args...)
		return nil
	}
	names := c.WrittenColumns(s.cols)
	cols := make([]string, len(names))
	vals := make([]string, len(names))
	var set []string
	for i, n := range names {
		col := s.cols[n]
		cols[i] = schema.QuoteIdent(n)
		if p, ok := keyParam[n]; ok {
			vals[i] = p
			continue
		}
		v, err := pgText(col, c.After[n])
		if err != nil {
			return fmt.Errorf("column %q: %w", n, err)
		}
		vals[i] = "CAST(" + param(v) + " AS " + col.SQLType + ")"
		set = append(set, cols[i]+" = EXCLUDED."+cols[i])
	}
	keys := make([]string, len(s.keys))
	for i, k := range s.keys {
		keys[i] = schema.QuoteIdent(k.Name)
	}
	update := "NOTHING"
	if len(set) > 0 {
		update = "UPDATE SET " + strings.Join(set, ", ") + " WHERE " + wins("cur.xmin")
	}
	sql := fmt.Sprintf(`WITH w AS (INSERT INTO %s AS cur (%s) SELECT %s WHERE %s OR %s ON CONFLICT (%s) DO %s RETURNING 1) %s FROM w%s`,
		s.table, strings.Join(cols, ", "), strings.Join(vals, ", "), wins("NULL"), rowExists, strings.Join(keys, ", "), update, version(false), onVersion)
	b.Queue(sql, args...)
	return nil
}

// versionTable names the target in scoop.row_versions, as the trigger does.
func (s *Sink) versionTable() string { return s.cfg.Schema + "." + s.cfg.Target.Table }
