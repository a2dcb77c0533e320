package pipeline

import (
	"fmt"
	"strings"
)

// The reverse flow carries a service store's writes back into the monolith
// (a mapping with direction: both). Its contract with the stores and with
// services that publish their own writes (Cassandra) is here.

// ReverseTopic is the topic of a mapping's reverse flow:
// <prefix>.reverse.<mapping>. Its events have the same envelope as the
// forward topics; their commit time is the time of the write in the service
// store (for Cassandra, the write's USING TIMESTAMP).
func ReverseTopic(prefix string, m *Mapping) string {
	return prefix + ".reverse." + m.Name
}

// OriginHeader, on an event, names the scoop flow whose apply wrote the
// change into the store it was captured from (absent for a change an
// application made). A sink skips the changes that its own mapping's
// opposite flow wrote: they came from the store it writes to.
const OriginHeader = "scoop.origin"

// PrevHeader, on an event of a side that gives way under monolith-wins or
// service-wins, is the version of the row the write was made on top of:
// "<commit time in µs> <monolith|service>" (absent: unknown). The winning
// side applies such a write only if its row still has that version.
const PrevHeader = "scoop.prev"

// ForwardOrigin and ReverseOrigin name a mapping's two flows in
// OriginHeader: the forward flow writes the service store, the reverse flow
// the monolith.
func ForwardOrigin(m *Mapping) string { return "forward:" + m.Name }

// ReverseOrigin: see ForwardOrigin.
func ReverseOrigin(m *Mapping) string { return "reverse:" + m.Name }

// Reversed returns how the reverse flow shapes a service table's changes
// for the monolith: a mapping that renames the service's columns back to
// the monolith's (and drops columns the mapping does not carry: a column
// the service added stays in the service), and the monolith table's columns
// the service writes, with the monolith's types (a converted column is
// converted back by PostgreSQL). Monolith columns the mapping excludes are
// left alone. source are the monolith table's columns.
func (m *Mapping) Reversed(source []Column) (Mapping, Target, error) {
	_, table := m.SourceTable()
	t := Target{Table: table}
	rev := Mapping{Name: m.Name, Source: m.Store + "." + m.TargetTable(), Store: m.Store, Direction: m.Direction, Conflict: m.Conflict}
	from := map[string]string{} // service column -> monolith column
	for _, c := range source {
		to, ok := m.TargetColumn(c.Source)
		if !ok {
			continue
		}
		if prev, dup := from[to]; dup {
			return Mapping{}, Target{}, &MappingError{Mapping: m.Name, Field: "columns.rename", Problem: fmt.Sprintf("columns %q and %q both become %q in the service, so its writes cannot be sent back", prev, c.Source, to), Fix: "give each service column its own name"}
		}
		from[to] = c.Source
		rev.Columns.Include = append(rev.Columns.Include, to)
		if to != c.Source {
			if rev.Columns.Rename == nil {
				rev.Columns.Rename = map[string]string{}
			}
			rev.Columns.Rename[to] = c.Source
		}
		col := c
		col.Name, col.Source = c.Source, to
		t.Columns = append(t.Columns, col)
	}
	if len(t.KeyColumns()) == 0 {
		return Mapping{}, Target{}, &MappingError{Mapping: m.Name, Field: "direction", Problem: fmt.Sprintf("%s has no primary key, so the service's writes cannot be matched to its rows", m.Source), Fix: "add a primary key to the monolith table, or use direction: forward"}
	}
	return rev, t, nil
}

// ReverseSlotName names a store's reverse source objects in the service
// database: <base>_rev_<store> (base is SCOOP_SLOT for the slot,
// SCOOP_PUBLICATION for the publication), cut to PostgreSQL's 63 bytes.
func ReverseSlotName(base, store string) string {
	n := base + "_rev_" + strings.ToLower(store)
	if len(n) > 63 {
		n = n[:63]
	}
	return n
}
