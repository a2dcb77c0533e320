package schema

// Column is a column of a captured table.
type Column struct {
	Name    string
	Type    uint32 // type OID (a domain's own OID; BaseType resolves it)
	TypeMod int32
	Key     bool // part of the primary key (or replica identity)
}

// Table is the shape of a captured table at one point of the stream. A schema
// change produces a new *Table; events keep the shape they were decoded with.
type Table struct {
	OID     uint32
	Schema  string
	Name    string
	Columns []Column
}

// QualifiedName is schema.table, unquoted (for logs, topics and mappings).
func (t *Table) QualifiedName() string { return t.Schema + "." + t.Name }

// KeyIndexes returns the positions of the key columns.
func (t *Table) KeyIndexes() []int {
	var idx []int
	for i, c := range t.Columns {
		if c.Key {
			idx = append(idx, i)
		}
	}
	return idx
}

// ValueKind says what a Value holds.
type ValueKind uint8

const (
	// Absent marks a column that the message did not carry (the old tuple of
	// an UPDATE or DELETE under REPLICA IDENTITY DEFAULT holds only the key).
	Absent ValueKind = iota
	// Null is SQL NULL.
	Null
	// Text holds the value in PostgreSQL's text output format.
	Text
	// Unchanged is a TOASTed value that an UPDATE did not touch: PostgreSQL
	// did not send it and the sink must leave the stored value alone.
	Unchanged
)

// Value is one column's value in a row.
type Value struct {
	Kind ValueKind
	Data []byte
}

// Row holds one value per column of its Table, in column order.
type Row []Value
