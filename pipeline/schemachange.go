package pipeline

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrSchemaChanged: the source table's columns no longer match the shape a
// sink was built with (a column was added, dropped or changed type). It is
// not a data error: the sink must be rebuilt from the source's current
// columns, and the batch applied again. Consumers do not retry it.
var ErrSchemaChanged = errors.New("source schema changed")

// ErrSchemaMismatch: the store's target table cannot take the source's
// columns (a type the target column cannot hold, a new key column). An
// operator has to change the target; the mapping pauses until then.
var ErrSchemaMismatch = errors.New("target table cannot take the source's columns")

// SchemaChangedError names the columns that changed.
type SchemaChangedError struct {
	Columns []string // target column names, sorted
	Reason  string   // e.g. "events carry columns the target does not have"
}

func (e *SchemaChangedError) Error() string {
	return fmt.Sprintf("%s: %s (columns %s)", ErrSchemaChanged, e.Reason, strings.Join(quoteAll(e.Columns), ", "))
}

// Is makes errors.Is(err, ErrSchemaChanged) true.
func (e *SchemaChangedError) Is(target error) bool { return target == ErrSchemaChanged }

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = fmt.Sprintf("%q", n)
	}
	return out
}

// CheckColumns refuses a batch that carries a column the target does not
// know (it was added to the source after the sink was built). Sinks call it
// before writing anything, so no event with a new column is applied before
// the column exists in the store.
func CheckColumns(batch []Change, target map[string]Column) error {
	// Counting the target's columns an event has (lookups) is much cheaper
	// than walking the event's columns (a map iteration per event): only an
	// event with more columns than it has of the target's is walked.
	names := make([]string, 0, len(target))
	for n := range target {
		names = append(names, n)
	}
	var unknown map[string]bool
	for i := range batch {
		known := 0
		for _, n := range names {
			if _, ok := batch[i].After[n]; ok {
				known++
			}
		}
		if known == len(batch[i].After) {
			continue
		}
		for n := range batch[i].After {
			if _, ok := target[n]; !ok {
				if unknown == nil {
					unknown = map[string]bool{}
				}
				unknown[n] = true
			}
		}
	}
	if unknown == nil {
		return nil
	}
	return &SchemaChangedError{Columns: sortedSet(unknown), Reason: "events carry columns the target does not have"}
}

// TargetDiff lists the columns whose presence or type differs between two
// shapes of a target, sorted.
func TargetDiff(old, cur Target) []string {
	was := map[string]Column{}
	for _, c := range old.Columns {
		was[c.Name] = c
	}
	diff := map[string]bool{}
	for _, c := range cur.Columns {
		o, ok := was[c.Name]
		if !ok || o.SQLType != c.SQLType || o.BaseType != c.BaseType || o.Array != c.Array || o.Elem != c.Elem || o.Key != c.Key {
			diff[c.Name] = true
		}
		delete(was, c.Name)
	}
	for n := range was {
		diff[n] = true
	}
	return sortedSet(diff)
}

// HasColumn reports whether the target has a column of that name.
func (t *Target) HasColumn(name string) bool {
	for _, c := range t.Columns {
		if c.Name == name {
			return true
		}
	}
	return false
}

func sortedSet(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
