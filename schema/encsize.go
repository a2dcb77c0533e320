package schema

// Buffer sizes for the Encoder's output: appending an event to a nil or
// small buffer grows it several times (with Kafka Connect schemas the value
// schema alone is kilobytes, copied again at every growth).

// ValueCap is a capacity that Value usually fills for an event of t
// without growing it.
func (e *Encoder) ValueCap(t *Table) int {
	n := 640 + 48*len(t.Columns)
	if e.cfg.Schemas {
		n += len(e.tableSchemas(t).value) + len(`{"schema":,"payload":}`)
	}
	return n
}

// KeyCap is a capacity that Key usually fills for an event of t without
// growing it.
func (e *Encoder) KeyCap(t *Table) int {
	n := 32
	for _, c := range t.Columns {
		if c.Key {
			n += len(c.Name) + 24
		}
	}
	if e.cfg.Schemas {
		n += len(e.tableSchemas(t).key) + len(`{"schema":,"payload":}`)
	}
	return n
}
