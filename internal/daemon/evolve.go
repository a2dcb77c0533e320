package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/scoop-cdc/scoop/pipeline"
)

// schemaWatch wraps a mapping's sink so that it follows the source's
// columns:
//   - columns in ignore (events still carry them, but the source no longer
//     has them) are removed from each change before the sink sees it;
//   - a write that fails for good is checked against the source's current
//     columns: when they changed (a type the target cannot take, a dropped
//     NOT NULL column), the error becomes a SchemaChangedError, so the
//     mapping rebuilds its sink instead of dead-lettering the events.
type schemaWatch struct {
	pipeline.Sink
	target   pipeline.Target
	ignore   map[string]bool
	describe func(ctx context.Context) (pipeline.Target, error)
}

func (w *schemaWatch) Apply(ctx context.Context, batch []pipeline.Change) error {
	if len(w.ignore) > 0 {
		for i := range batch {
			for n := range w.ignore {
				delete(batch[i].After, n)
				delete(batch[i].Unchanged, n)
			}
		}
	}
	err := w.Sink.Apply(ctx, batch)
	if err == nil || !pipeline.IsPermanent(err) {
		return err
	}
	cur, derr := w.describe(ctx)
	if derr != nil {
		// Not permanent: retried until the source answers, so a type change
		// is never mistaken for bad data.
		return fmt.Errorf("check the source's columns after a failed write (%v): %w", err, derr)
	}
	if diff := pipeline.TargetDiff(w.target, cur); len(diff) > 0 {
		return &pipeline.SchemaChangedError{Columns: diff, Reason: fmt.Sprintf("a write failed (%v) and the source's columns changed since the sink started", err)}
	}
	return err
}

// ignoredColumns updates the set of event columns the sink must drop after
// a rebuild: a column an event carried that the rebuilt target still does
// not have is gone from the source (added, then dropped before the consumer
// caught up), and retrying would loop. Columns the target has again are
// written again.
func ignoredColumns(ignore map[string]bool, lastErr error, target pipeline.Target, log *slog.Logger) {
	var sc *pipeline.SchemaChangedError
	if errors.As(lastErr, &sc) {
		for _, n := range sc.Columns {
			if !target.HasColumn(n) && !ignore[n] {
				ignore[n] = true
				log.Warn("events carry a column the source no longer has; its values are ignored", "column", n)
			}
		}
	}
	for n := range ignore {
		if target.HasColumn(n) {
			delete(ignore, n)
		}
	}
}

// sameSchemaChange reports whether two errors are schema changes of the
// same columns (a rebuild that did not help: back off as for any failure).
func sameSchemaChange(a, b error) bool {
	var x, y *pipeline.SchemaChangedError
	if !errors.As(a, &x) || !errors.As(b, &y) || len(x.Columns) != len(y.Columns) {
		return false
	}
	for i := range x.Columns {
		if x.Columns[i] != y.Columns[i] {
			return false
		}
	}
	return true
}

// liveMapping returns the mapping without the include, exclude and types
// entries that name columns the source table no longer has: excluding or
// converting a dropped column is moot, and refusing it would pause the
// mapping at its next sink rebuild. Renames stay strict: a rename of a
// column that is gone must be pointed at its new name by the operator
// (docs/sinks.md).
func liveMapping(m pipeline.Mapping, source []pipeline.Column, log *slog.Logger) pipeline.Mapping {
	has := map[string]bool{}
	for _, c := range source {
		has[c.Source] = true
	}
	keep := func(field string, names []string) []string {
		var out []string
		for _, n := range names {
			if has[n] {
				out = append(out, n)
			} else {
				log.Warn("the mapping names a column the source no longer has; ignored", "field", field, "column", n)
			}
		}
		if len(out) == 0 && len(names) > 0 && field == "columns.include" {
			return names // never widen an include list to every column: let ShapeTarget refuse it
		}
		return out
	}
	m.Columns.Include = keep("columns.include", m.Columns.Include)
	m.Columns.Exclude = keep("columns.exclude", m.Columns.Exclude)
	if len(m.Columns.Types) > 0 {
		types := map[string]string{}
		for n, typ := range m.Columns.Types {
			if has[n] {
				types[n] = typ
			} else {
				log.Warn("the mapping names a column the source no longer has; ignored", "field", "columns.types", "column", n)
			}
		}
		m.Columns.Types = types
	}
	return m
}
