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

// EventValueCap is ValueCap plus the text of ev's rows, with room for some
// escaping: a wide value (TOAST, 16 KB and more) would otherwise grow the
// buffer several times, each a copy of everything written so far.
func (e *Encoder) EventValueCap(ev *Event) int {
	n := e.ValueCap(ev.Table)
	for _, row := range []Row{ev.Before, ev.After} {
		for _, v := range row {
			n += len(v.Data) + len(v.Data)/8
		}
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
