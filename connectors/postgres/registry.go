package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/internal/registry"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// Registry stores the mappings of one scoop deployment (keyed by its slot)
// in the monolith, in scoop.mappings, so every instance sees the same set
// and picks up changes without a restart (each polls the version).
type Registry struct {
	url  string
	slot string

	mu       sync.Mutex
	poll     *pgx.Conn // kept for Version, which daemons call every second
	prepared bool      // the registry tables exist
}

// The monolith keeps the registry every instance shares.
var _ registry.Store = (*Registry)(nil)

// NewRegistry returns the registry of the deployment that owns slot.
func NewRegistry(url, slot string) *Registry { return &Registry{url: url, slot: slot} }

func (r *Registry) conn(ctx context.Context) (*pgx.Conn, error) {
	conn, err := connect(ctx, r.url)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	prepared := r.prepared
	r.mu.Unlock()
	if prepared {
		return conn, nil
	}
	err = prepare(ctx, conn, "prepare the mapping registry (schema scoop in the monolith)", `
		CREATE SCHEMA IF NOT EXISTS scoop;
		CREATE TABLE IF NOT EXISTS scoop.mappings (
			slot        text NOT NULL,
			name        text NOT NULL,
			spec        jsonb NOT NULL,
			generation  int NOT NULL DEFAULT 0,
			updated_at  timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (slot, name));
		CREATE TABLE IF NOT EXISTS scoop.registry (
			slot     text PRIMARY KEY,
			version  bigint NOT NULL);
		-- The mappings file last applied (registry.FileState); added by
		-- this version, and only when missing: ALTER TABLE would lock the
		-- table every instance polls.
		DO $$ BEGIN
			IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'scoop.registry'::regclass AND attname = 'file_digest') THEN
				ALTER TABLE scoop.registry ADD COLUMN file_digest text, ADD COLUMN file_applied_at timestamptz;
			END IF;
		END $$`)
	if err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	r.mu.Lock()
	r.prepared = true
	r.mu.Unlock()
	return conn, nil
}

// Close releases the polling connection.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.poll != nil {
		r.poll.Close(context.Background())
		r.poll = nil
	}
}

// Version changes whenever the deployment's mappings change.
func (r *Registry) Version(ctx context.Context) (int64, error) {
	r.mu.Lock()
	conn := r.poll
	r.poll = nil
	r.mu.Unlock()
	if conn == nil || conn.IsClosed() {
		var err error
		if conn, err = r.conn(ctx); err != nil {
			return 0, err
		}
	}
	var v int64
	err := conn.QueryRow(ctx, `SELECT version FROM scoop.registry WHERE slot = $1`, r.slot).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil
	}
	if err != nil {
		conn.Close(context.Background())
		return 0, err
	}
	r.mu.Lock()
	if r.poll == nil {
		r.poll = conn
	} else {
		conn.Close(context.Background())
	}
	r.mu.Unlock()
	return v, nil
}

// List returns the registered mappings, by name.
func (r *Registry) List(ctx context.Context) ([]registry.Mapping, int64, error) {
	conn, err := r.conn(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close(context.Background())
	return r.list(ctx, conn)
}

func (r *Registry) list(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}) ([]registry.Mapping, int64, error) {
	var version int64
	if err := q.QueryRow(ctx, `SELECT version FROM scoop.registry WHERE slot = $1`, r.slot).Scan(&version); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, fmt.Errorf("read registry version: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT spec, generation, updated_at FROM scoop.mappings WHERE slot = $1 ORDER BY name`, r.slot)
	if err != nil {
		return nil, 0, fmt.Errorf("read mappings: %w", err)
	}
	defer rows.Close()
	var out []registry.Mapping
	for rows.Next() {
		var spec []byte
		var m registry.Mapping
		if err := rows.Scan(&spec, &m.Generation, &m.UpdatedAt); err != nil {
			return nil, 0, fmt.Errorf("read mappings: %w", err)
		}
		if err := json.Unmarshal(spec, &m.Mapping); err != nil {
			return nil, 0, fmt.Errorf("decode mapping: %w", err)
		}
		out = append(out, m)
	}
	return out, version, rows.Err()
}

// Apply makes the registry hold exactly the file's mappings, in one
// transaction, after checking every mapping against the monolith's catalog.
// A bad file changes nothing.
func (r *Registry) Apply(ctx context.Context, file *pipeline.File) ([]registry.Step, error) {
	return r.apply(ctx, file, false)
}

// ApplyAtStart applies the file as Apply does, unless the registry was last
// applied from another file (registry.ErrFileDiffers).
func (r *Registry) ApplyAtStart(ctx context.Context, file *pipeline.File) ([]registry.Step, error) {
	return r.apply(ctx, file, true)
}

func (r *Registry) apply(ctx context.Context, file *pipeline.File, atStart bool) ([]registry.Step, error) {
	conn, err := r.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	if err := CheckMappings(ctx, conn, file); err != nil {
		return nil, err
	}
	var steps []registry.Step
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('scoop.registry:' || $1))`, r.slot); err != nil {
			return err
		}
		if atStart {
			last, err := r.fileState(ctx, tx)
			if err != nil {
				return err
			}
			if err := last.Allows(file.Digest()); err != nil {
				return err
			}
		}
		current, _, err := r.list(ctx, tx)
		if err != nil {
			return err
		}
		steps = registry.Plan(current, file)
		changed := false
		for _, st := range steps {
			switch st.Action {
			case "add", "change":
				changed = true
				m := findMapping(file, st.Mapping)
				spec, _ := json.Marshal(m)
				if _, err := tx.Exec(ctx, `INSERT INTO scoop.mappings (slot, name, spec) VALUES ($1, $2, $3)
					ON CONFLICT (slot, name) DO UPDATE SET spec = EXCLUDED.spec, updated_at = now()`, r.slot, m.Name, spec); err != nil {
					return fmt.Errorf("store mapping %s: %w", m.Name, err)
				}
			case "remove":
				changed = true
				if _, err := tx.Exec(ctx, `DELETE FROM scoop.mappings WHERE slot = $1 AND name = $2`, r.slot, st.Mapping); err != nil {
					return fmt.Errorf("remove mapping %s: %w", st.Mapping, err)
				}
			}
		}
		if changed {
			if err := bumpVersion(ctx, tx, r.slot); err != nil {
				return err
			}
		}
		return r.recordFile(ctx, tx, file.Digest())
	})
	return steps, err
}

// fileState reads which file the registry was last applied from.
func (r *Registry) fileState(ctx context.Context, tx pgx.Tx) (registry.FileState, error) {
	var st registry.FileState
	var digest *string
	var at *time.Time
	err := tx.QueryRow(ctx, `SELECT file_digest, file_applied_at FROM scoop.registry WHERE slot = $1`, r.slot).Scan(&digest, &at)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("read the mappings file last applied: %w", err)
	}
	if digest != nil {
		st.Digest = *digest
	}
	if at != nil {
		st.AppliedAt = *at
	}
	return st, nil
}

// recordFile records the file just applied (digest, or registry.Edited for a
// change made by hand), without changing the version.
func (r *Registry) recordFile(ctx context.Context, tx pgx.Tx, digest string) error {
	_, err := tx.Exec(ctx, `INSERT INTO scoop.registry (slot, version, file_digest, file_applied_at) VALUES ($1, 0, $2, now())
		ON CONFLICT (slot) DO UPDATE SET file_digest = EXCLUDED.file_digest, file_applied_at = EXCLUDED.file_applied_at`, r.slot, digest)
	if err != nil {
		return fmt.Errorf("record the mappings file applied: %w", err)
	}
	return nil
}

func bumpVersion(ctx context.Context, tx pgx.Tx, slot string) error {
	_, err := tx.Exec(ctx, `INSERT INTO scoop.registry (slot, version) VALUES ($1, 1)
		ON CONFLICT (slot) DO UPDATE SET version = scoop.registry.version + 1`, slot)
	if err != nil {
		return fmt.Errorf("bump registry version: %w", err)
	}
	return nil
}

// Remove deletes one mapping.
func (r *Registry) Remove(ctx context.Context, name string) error {
	conn, err := r.conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM scoop.mappings WHERE slot = $1 AND name = $2`, r.slot, name)
		if err != nil {
			return fmt.Errorf("remove mapping %s: %w", name, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %q (see scoop mappings list)", ErrNoSuchMapping, name)
		}
		if err := bumpVersion(ctx, tx, r.slot); err != nil {
			return err
		}
		// No file holds what the registry holds now.
		return r.recordFile(ctx, tx, registry.Edited)
	})
}

// ErrNoSuchMapping is returned for a name the registry does not hold.
var ErrNoSuchMapping = errors.New("no such mapping")

// Get returns one mapping.
func (r *Registry) Get(ctx context.Context, name string) (*registry.Mapping, error) {
	all, _, err := r.List(ctx)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if all[i].Name == name {
			return &all[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %q (see scoop mappings list)", ErrNoSuchMapping, name)
}

// NextGeneration starts a replay: the mapping gets a new generation (a new
// consumer group, fresh sink progress). prepare runs before the change is
// visible to the daemons (it positions the new group's offsets).
func (r *Registry) NextGeneration(ctx context.Context, name string, prepare func(next *registry.Mapping) error) (*registry.Mapping, error) {
	conn, err := r.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var out *registry.Mapping
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var spec []byte
		m := &registry.Mapping{}
		err := tx.QueryRow(ctx, `SELECT spec, generation FROM scoop.mappings WHERE slot = $1 AND name = $2 FOR UPDATE`, r.slot, name).Scan(&spec, &m.Generation)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q (see scoop mappings list)", ErrNoSuchMapping, name)
		}
		if err != nil {
			return err
		}
		json.Unmarshal(spec, &m.Mapping)
		m.Generation++
		if err := prepare(m); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE scoop.mappings SET generation = $3, updated_at = now() WHERE slot = $1 AND name = $2`, r.slot, name, m.Generation); err != nil {
			return err
		}
		out = m
		return bumpVersion(ctx, tx, r.slot)
	})
	return out, err
}

// Resnapshot asks the source to copy a table again (an incremental snapshot
// while streaming continues).
func (r *Registry) Resnapshot(ctx context.Context, table TableName) error {
	conn, err := r.conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := ensureStateTables(ctx, conn); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM scoop.source_tables WHERE slot = $1 AND schema_name = $2 AND table_name = $3`, r.slot, table.Schema, table.Name); err != nil {
			return fmt.Errorf("request snapshot of %s: %w", table, err)
		}
		return bumpVersion(ctx, tx, r.slot)
	})
}

// Snapshotted reports whether the source has copied the table.
func (r *Registry) Snapshotted(ctx context.Context, table TableName) (bool, error) {
	conn, err := r.conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	if err := ensureStateTables(ctx, conn); err != nil {
		return false, err
	}
	done, err := snapshottedTables(ctx, conn, r.slot)
	return done[table], err
}

func findMapping(f *pipeline.File, name string) pipeline.Mapping {
	for _, m := range f.Mappings {
		if m.Name == name {
			return m
		}
	}
	return pipeline.Mapping{}
}

// CheckMappings validates the file against the monolith: tables exist and are
// keyed, and named columns exist. Errors name the mapping, the field and a fix.
func CheckMappings(ctx context.Context, conn *pgx.Conn, file *pipeline.File) error {
	var errs []error
	for i := range file.Mappings {
		m := &file.Mappings[i]
		s, t := m.SourceTable()
		tbl, err := describeTable(ctx, conn, TableName{s, t})
		if err != nil {
			if errors.Is(err, ErrPrecondition) {
				errs = append(errs, &pipeline.MappingError{Mapping: m.Name, Field: "source", Problem: trimPrecondition(err), Fix: "name an existing table with a primary key (or replica identity), as schema.table"})
				continue
			}
			return err
		}
		cols := make([]pipeline.Column, len(tbl.Columns))
		for j, c := range tbl.Columns {
			cols[j] = pipeline.Column{Name: c.Name, Source: c.Name, Key: c.Key}
		}
		if _, err := m.ShapeTarget(cols); err != nil {
			errs = append(errs, err)
		}
		if m.Direction == pipeline.DirectionBoth {
			// The service's writes are matched to monolith rows by key: a
			// table keyed only by REPLICA IDENTITY FULL has none.
			var keyed bool
			if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1::regclass AND (indisprimary OR indisreplident))`,
				schema.QuoteQualified(s, t)).Scan(&keyed); err != nil {
				return err
			}
			if !keyed {
				errs = append(errs, &pipeline.MappingError{Mapping: m.Name, Field: "direction", Problem: fmt.Sprintf("%s.%s has no primary key, so the service's writes cannot be matched to its rows", s, t), Fix: "add a primary key to the monolith table, or use direction: forward"})
			} else if _, _, err := m.Reversed(cols); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w:\n%w", pipeline.ErrInvalidMappings, errors.Join(errs...))
	}
	return nil
}

func trimPrecondition(err error) string {
	msg := err.Error()
	prefix := ErrPrecondition.Error() + ": "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}
