package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
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
	// Policy is the mapping's conflict policy (pipeline.LastWriterWins by
	// default).
	Policy pipeline.Conflict
	// Tag names the flow (pipeline.ForwardOrigin or ReverseOrigin): set as
	// scoop.applying in every transaction (scoop's triggers let those
	// writes through) and, when the sink applies without a replication
	// origin, written as an OriginPrefix message.
	Tag string
}

// losing: under monolith-wins or service-wins, this side gives way.
func (c *Conflict) losing() bool {
	switch c.Policy {
	case pipeline.MonolithWins:
		return c.Side == SideService
	case pipeline.ServiceWins:
		return c.Side == SideMonolith
	}
	return false
}

func (c *Conflict) policy() string {
	if c.Policy == "" {
		return string(pipeline.LastWriterWins)
	}
	return string(c.Policy)
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
ALTER TABLE scoop.row_versions ADD COLUMN IF NOT EXISTS prev_ts bigint, ADD COLUMN IF NOT EXISTS prev_side text;
CREATE OR REPLACE FUNCTION scoop.commit_us(x xid) RETURNS bigint LANGUAGE sql STABLE AS
	$$ SELECT (extract(epoch FROM pg_xact_commit_timestamp(x)) * 1000000)::bigint $$;
-- decide: does a change (ts, side; made on top of version prev) beat the
-- row's current version (cur, with the version it was made on top of)?
CREATE OR REPLACE FUNCTION scoop.decide(cur_ts bigint, cur_side text, cur_prev_ts bigint, cur_prev_side text,
	ts bigint, side text, policy text, prev_ts bigint, prev_side text)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE winner text;
BEGIN
	-- NULL: written by this transaction, or older than the commit times
	-- PostgreSQL keeps.
	IF cur_ts IS NULL THEN RETURN true; END IF;
	IF policy = 'last-writer-wins' THEN
		RETURN ts > cur_ts OR (ts = cur_ts AND (side = cur_side OR side = 'monolith'));
	END IF;
	winner := CASE policy WHEN 'monolith-wins' THEN 'monolith' ELSE 'service' END;
	IF side = cur_side THEN
		RETURN ts >= cur_ts; -- one side's own writes, in their order
	END IF;
	IF side = winner THEN
		-- over the other side's write, unless that write was made on top
		-- of this change or a later one
		RETURN NOT coalesce(cur_prev_side = winner AND cur_prev_ts >= ts, false);
	END IF;
	-- the losing side's change only if made on top of the current version
	-- (or a later one: a snapshot row is dated by its snapshot, after the
	-- write it copied)
	RETURN coalesce(prev_side = cur_side AND prev_ts >= cur_ts, false);
END $$;
CREATE OR REPLACE FUNCTION scoop.apply_wins(row_xmin xid, t text, k jsonb, ts bigint, side text, local_side text,
	policy text, prev_ts bigint, prev_side text)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_ts bigint; v_side text; v_xmin xid; v_prev_ts bigint; v_prev_side text; found_v boolean;
	cur_ts bigint; cur_side text; cur_prev_ts bigint; cur_prev_side text;
BEGIN
	SELECT r.ts, r.side, r.xmin, r.prev_ts, r.prev_side INTO v_ts, v_side, v_xmin, v_prev_ts, v_prev_side
	FROM scoop.row_versions r WHERE r.tbl = t AND r.key = k;
	found_v := FOUND;
	IF row_xmin IS NULL THEN
		IF NOT found_v THEN RETURN true; END IF;
		cur_ts := coalesce(v_ts, scoop.commit_us(v_xmin)); cur_side := v_side;
		cur_prev_ts := v_prev_ts; cur_prev_side := v_prev_side;
	ELSIF found_v AND v_xmin = row_xmin THEN
		cur_ts := coalesce(v_ts, scoop.commit_us(row_xmin)); cur_side := v_side;
		cur_prev_ts := v_prev_ts; cur_prev_side := v_prev_side;
	ELSE
		cur_ts := scoop.commit_us(row_xmin); cur_side := local_side;
	END IF;
	RETURN scoop.decide(cur_ts, cur_side, cur_prev_ts, cur_prev_side, ts, side, policy, prev_ts, prev_side);
END $$;
CREATE OR REPLACE FUNCTION scoop.apply_guard(old_ts bigint, old_side text, old_xmin xid, old_prev_ts bigint, old_prev_side text,
	ts bigint, side text, policy text, prev_ts bigint, prev_side text)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
	IF scoop.decide(coalesce(old_ts, scoop.commit_us(old_xmin)), old_side, old_prev_ts, old_prev_side, ts, side, policy, prev_ts, prev_side) THEN
		RETURN true;
	END IF;
	RAISE EXCEPTION 'scoop: the row was written while scoop applied an older change to it; retrying'
		USING ERRCODE = '40001';
END $$;
-- tombstone_guard: a delete that found no row to delete records only its
-- tombstone; if the row's version is now a live write that the statement's
-- snapshot did not see (seen_xmin), an application inserted the row since,
-- and the tombstone would be recorded over a row that stays: fail, retried
-- with a snapshot that sees the row.
CREATE OR REPLACE FUNCTION scoop.tombstone_guard(deleted boolean, now_xmin xid, seen_xmin xid)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
	IF deleted OR now_xmin = seen_xmin THEN
		RETURN true;
	END IF;
	RAISE EXCEPTION 'scoop: the row was written while scoop applied a delete of it; retrying'
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
	ON CONFLICT (tbl, key) DO UPDATE SET ts = NULL, side = EXCLUDED.side, deleted = true, prev_ts = NULL, prev_side = NULL;
	RETURN NULL;
END $$;
-- The side that gives way under monolith-wins or service-wins notes each
-- application write: before it, the version it is made on top of, as a
-- transactional message (PrevPrefix) that the side's source reads ahead of
-- the row's change (reading only: no lock taken before the row's); after
-- it, its own version, with that one as prev. Rows, then versions: the
-- order scoop's apply locks them in too.
CREATE OR REPLACE FUNCTION scoop.note_prev() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE k jsonb; t text; r record; p_ts bigint; p_side text;
BEGIN
	IF coalesce(current_setting('scoop.applying', true), '') <> '' THEN
		IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
		RETURN NEW;
	END IF;
	t := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
	IF TG_OP = 'DELETE' THEN
		SELECT jsonb_object_agg(c, to_jsonb(OLD) -> c) INTO k FROM unnest(TG_ARGV[1:]) AS c;
	ELSE
		SELECT jsonb_object_agg(c, to_jsonb(NEW) -> c) INTO k FROM unnest(TG_ARGV[1:]) AS c;
	END IF;
	SELECT v.ts, v.side, v.xmin AS x, v.prev_ts AS pts, v.prev_side AS pside INTO r
	FROM scoop.row_versions v WHERE v.tbl = t AND v.key = k;
	IF FOUND THEN
		IF r.x = pg_current_xact_id()::xid THEN
			-- written earlier in this transaction: the write is still made
			-- on top of the version before the transaction
			p_ts := r.pts; p_side := r.pside;
		ELSE
			p_ts := coalesce(r.ts, scoop.commit_us(r.x)); p_side := r.side;
		END IF;
	END IF;
	PERFORM set_config('scoop.prev', concat_ws(' ', p_ts, p_side), true);
	PERFORM pg_logical_emit_message(true, 'scoop-prev', t || chr(9) || k::text || chr(9) || concat_ws(' ', p_ts, p_side));
	IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
	RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION scoop.note_write() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE k jsonb; p text; t text; r record; now_prev text; seen xid; n bigint;
BEGIN
	IF coalesce(current_setting('scoop.applying', true), '') <> '' THEN
		RETURN NULL;
	END IF;
	t := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
	IF TG_OP = 'DELETE' THEN
		SELECT jsonb_object_agg(c, to_jsonb(OLD) -> c) INTO k FROM unnest(TG_ARGV[1:]) AS c;
	ELSE
		SELECT jsonb_object_agg(c, to_jsonb(NEW) -> c) INTO k FROM unnest(TG_ARGV[1:]) AS c;
	END IF;
	p := coalesce(current_setting('scoop.prev', true), '');
	IF TG_OP = 'INSERT' THEN
		-- An insert locks nothing before its row: scoop may have applied
		-- a delete of the key between note_prev's read and the insert
		-- (which waited for it). Then the write is made on top of that
		-- delete, not of what note_prev sent: write the row again (a no-op
		-- update), so that note_prev sends the version it is really made on
		-- top of ahead of a change the other side can accept.
		SELECT v.ts, v.side, v.xmin AS x INTO r FROM scoop.row_versions v WHERE v.tbl = t AND v.key = k;
		IF FOUND THEN
			seen := r.x;
		END IF;
		IF FOUND AND r.x <> pg_current_xact_id()::xid THEN
			now_prev := concat_ws(' ', coalesce(r.ts, scoop.commit_us(r.x)), r.side);
			IF now_prev <> p THEN
				EXECUTE format('UPDATE %I.%I AS t SET %I = t.%I WHERE %s', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[1], TG_ARGV[1],
					(SELECT string_agg(format('t.%I = ($1).%I', c, c), ' AND ') FROM unnest(TG_ARGV[1:]) AS c)) USING NEW;
				RETURN NULL;
			END IF;
		END IF;
	END IF;
	INSERT INTO scoop.row_versions (tbl, key, ts, side, deleted, prev_ts, prev_side)
	VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, k, NULL, TG_ARGV[0], TG_OP = 'DELETE',
		nullif(split_part(p, ' ', 1), '')::bigint, nullif(split_part(p, ' ', 2), ''))
	ON CONFLICT (tbl, key) DO UPDATE SET ts = NULL, side = EXCLUDED.side, deleted = EXCLUDED.deleted,
		prev_ts = EXCLUDED.prev_ts, prev_side = EXCLUDED.prev_side
	WHERE TG_OP <> 'INSERT' OR scoop.row_versions.xmin = seen OR scoop.row_versions.xmin = pg_current_xact_id()::xid;
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n = 0 THEN
		-- The insert's version changed since it was read above: scoop
		-- recorded a change of the key meanwhile (the tombstone of a delete
		-- that found no row: the insert was not committed yet), and this
		-- write waited for it. It is made on top of that change: write the
		-- row again (a no-op update), which notes it so.
		EXECUTE format('UPDATE %I.%I AS t SET %I = t.%I WHERE %s', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[1], TG_ARGV[1],
			(SELECT string_agg(format('t.%I = ($1).%I', c, c), ' AND ') FROM unnest(TG_ARGV[1:]) AS c)) USING NEW;
	END IF;
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
	// Under last-writer-wins an application's delete is all a side must
	// note (the other writes date themselves); the side that gives way
	// under monolith-wins or service-wins notes every write with the
	// version it was made on top of.
	ddl := fmt.Sprintf(`DROP TRIGGER IF EXISTS scoop_note_delete ON %[1]s;
		DROP TRIGGER IF EXISTS scoop_versions ON %[1]s;
		DROP TRIGGER IF EXISTS scoop_prev ON %[1]s;
		CREATE TRIGGER scoop_versions AFTER DELETE ON %[1]s FOR EACH ROW EXECUTE FUNCTION scoop.note_delete(%[2]s)`,
		s.table, strings.Join(args, ", "))
	if s.cfg.Conflict.losing() {
		ddl = fmt.Sprintf(`DROP TRIGGER IF EXISTS scoop_note_delete ON %[1]s;
		DROP TRIGGER IF EXISTS scoop_versions ON %[1]s;
		DROP TRIGGER IF EXISTS scoop_prev ON %[1]s;
		CREATE TRIGGER scoop_prev BEFORE INSERT OR UPDATE OR DELETE ON %[1]s FOR EACH ROW EXECUTE FUNCTION scoop.note_prev(%[2]s);
		CREATE TRIGGER scoop_versions AFTER INSERT OR UPDATE OR DELETE ON %[1]s FOR EACH ROW EXECUTE FUNCTION scoop.note_write(%[2]s)`,
			s.table, strings.Join(args, ", "))
	}
	return prepare(ctx, s.conn, "mapping "+s.cfg.Mapping+": install the delete trigger on "+s.table, ddl)
}

// yieldDeadlocks makes this session the one PostgreSQL aborts when scoop's
// apply and an application's transaction deadlock on the same rows (an
// application's insert notes its version before the row, an update after
// locking it): the session that waits past its deadlock_timeout first is
// the one that gives up, and scoop's batch is retried. Setting it needs
// superuser or GRANT SET ON PARAMETER deadlock_timeout; without it the
// application may be the one aborted, which is logged.
func (s *Sink) yieldDeadlocks(ctx context.Context, conn *pgx.Conn) {
	if _, err := conn.Exec(ctx, `SET deadlock_timeout = '50ms'`); err != nil {
		s.cfg.Logger.Warn("cannot lower deadlock_timeout for scoop's apply sessions: on a deadlock with an application's transaction, PostgreSQL may abort the application's instead of scoop's (fix: GRANT SET ON PARAMETER deadlock_timeout TO <scoop role>)",
			"mapping", s.cfg.Mapping, "error", err)
	}
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
	policy := param(s.cfg.Conflict.policy())
	prevTS, prevSide := parsePrev(c.Prev)
	pts, pside := param(prevTS), param(prevSide)
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
		return fmt.Sprintf("scoop.apply_wins(%s, %s, %s, %s, %s, %s, %s, %s::bigint, %s::text)", xmin, tbl, key, ts, side, local, policy, pts, pside)
	}
	version := func(deleted bool) string {
		return fmt.Sprintf(`INSERT INTO scoop.row_versions (tbl, key, ts, side, deleted) SELECT %s, %s, %s, %s, %t`, tbl, key, ts, side, deleted)
	}
	// The check above read a snapshot: an application's delete of the key
	// that committed since (its trigger wrote the version) would let an
	// older insert through. The version's write sees it, and fails the
	// batch, which is retried.
	onVersion := ` ON CONFLICT (tbl, key) DO UPDATE SET ts = EXCLUDED.ts, side = EXCLUDED.side, deleted = EXCLUDED.deleted, prev_ts = NULL, prev_side = NULL
		WHERE scoop.apply_guard(scoop.row_versions.ts, scoop.row_versions.side, scoop.row_versions.xmin,
			scoop.row_versions.prev_ts, scoop.row_versions.prev_side, EXCLUDED.ts, EXCLUDED.side, ` + policy + `, ` + pts + `::bigint, ` + pside + `::text)`
	rowExists := "EXISTS (SELECT 1 FROM " + s.table + " cur WHERE " + strings.Join(where, " AND ") + ")"
	if c.Op == schema.OpDelete {
		// No row to delete: an application's insert of the key that
		// committed since the snapshot wrote a live version (the side that
		// gives way notes its writes); the tombstone must not go over it.
		seen := `(SELECT v.xmin FROM scoop.row_versions v WHERE v.tbl = ` + tbl + ` AND v.key = ` + key + `)`
		tombstone := ` AND (EXISTS (SELECT 1 FROM d) OR scoop.tombstone_guard(scoop.row_versions.deleted, scoop.row_versions.xmin, ` + seen + `))`
		sql := fmt.Sprintf(`WITH d AS (DELETE FROM %s cur WHERE %s AND %s RETURNING 1) %s WHERE EXISTS (SELECT 1 FROM d) OR (NOT %s AND %s)%s%s`,
			s.table, strings.Join(where, " AND "), wins("cur.xmin"), version(true), rowExists, wins("NULL"), onVersion, tombstone)
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

// parsePrev reads pipeline.PrevHeader ("<µs> <side>"): the version of the
// row the change was made on top of (nil, nil when unknown).
func parsePrev(h string) (any, any) {
	ts, side, ok := strings.Cut(h, " ")
	if !ok {
		return nil, nil
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || (side != SideMonolith && side != SideService) {
		return nil, nil
	}
	return n, side
}

// versionTable names the target in scoop.row_versions, as the trigger does.
func (s *Sink) versionTable() string { return s.cfg.Schema + "." + s.cfg.Target.Table }

// PrevPrefix is the prefix of the trigger scoop.note_prev's messages:
// "<schema.table>\t<key as jsonb text>\t<µs> <side>" (the last part empty
// when the row had no known version).
const PrevPrefix = "scoop-prev"

// notePrev reads a scoop-prev message: the version the transaction's next
// change of that row was made on top of.
func notePrev(tx *txState, content []byte) {
	parts := strings.SplitN(string(content), "\t", 3)
	if len(parts) != 3 {
		return
	}
	if tx.prev == nil {
		tx.prev = map[string]string{}
	}
	tx.prev[parts[0]+" "+canonicalKey([]byte(parts[1]))] = parts[2]
}

// canonicalKey is a key object's JSON with sorted members and no spaces,
// so that jsonb's text and the event key compare equal.
func canonicalKey(b []byte) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return string(b)
	}
	if p, ok := m["payload"]; ok && len(m) == 2 && m["schema"] != nil {
		return canonicalKey(p) // SCOOP_EVENT_SCHEMAS: the Connect wrapping
	}
	out, err := json.Marshal(m)
	if err != nil {
		return string(b)
	}
	return string(out)
}
