package schema

import "encoding/json"

// Kafka Connect JSON schemas (as Debezium writes them with schemas enabled),
// built once per table shape and cached by the Encoder.

type connectField struct {
	Type     string `json:"type"`
	Optional bool   `json:"optional"`
	Field    string `json:"field,omitempty"`
	Name     string `json:"name,omitempty"`
	Version  int    `json:"version,omitempty"`
	// Parameters and Default as Kafka Connect's JsonConverter writes them.
	Parameters map[string]string `json:"parameters,omitempty"`
	Default    any               `json:"default,omitempty"`
	Items      *connectField     `json:"items,omitempty"`
	Fields     []*connectField   `json:"fields,omitempty"`
}

// connectType maps a PostgreSQL type to a Kafka Connect schema.
func connectType(types Types, oid uint32) *connectField {
	t := resolve(types, oid)
	if t.Category == 'A' && t.Elem != 0 {
		return &connectField{Type: "array", Optional: true, Items: connectType(types, t.Elem)}
	}
	f := &connectField{Type: "string", Optional: true}
	switch t.Name {
	case "bool":
		f.Type = "boolean"
	case "int2":
		f.Type = "int16"
	case "int4":
		f.Type = "int32"
	case "int8", "oid": // an oid goes up to 2^32-1
		f.Type = "int64"
	case "float4":
		f.Type = "float"
	case "float8":
		f.Type = "double"
	case "bytea":
		f.Type = "bytes"
	case "json", "jsonb":
		f.Name = "io.debezium.data.Json"
	case "xml":
		f.Name = "io.debezium.data.Xml"
	case "uuid":
		f.Name = "io.debezium.data.Uuid"
	case "date":
		f.Type, f.Name = "int32", "io.debezium.time.Date"
	case "timestamp":
		f.Type, f.Name = "int64", "io.debezium.time.MicroTimestamp"
	case "time":
		f.Type, f.Name = "int64", "io.debezium.time.MicroTime"
	case "timetz":
		f.Name = "io.debezium.time.ZonedTime"
	case "timestamptz":
		f.Name = "io.debezium.time.ZonedTimestamp"
	case "interval":
		f.Name = "io.debezium.time.Interval"
	}
	if t.Kind == 'e' {
		f.Name = "io.debezium.data.Enum"
	}
	// numeric and money: a plain string, as Debezium's
	// decimal.handling.mode=string writes them.
	if f.Name != "" {
		f.Version = 1
	}
	return f
}

func (e *Encoder) tableSchemas(t *Table) tableSchemas {
	et := e.table(t)
	if et.schemas != nil {
		return *et.schemas
	}
	base := e.cfg.Name + "." + t.Schema + "." + t.Name
	var key, row []*connectField
	for _, c := range t.Columns {
		f := connectType(e.types, c.Type)
		f.Field = c.Name
		row = append(row, f)
		if c.Key {
			k := *f
			k.Optional = false
			key = append(key, &k)
		}
	}
	keySchema := &connectField{Type: "struct", Name: base + ".Key", Fields: key}
	rowSchema := func(field string) *connectField {
		return &connectField{Type: "struct", Optional: true, Field: field, Name: base + ".Value", Fields: row}
	}
	str := func(field string, optional bool) *connectField {
		return &connectField{Type: "string", Optional: optional, Field: field}
	}
	source := sourceSchema()
	value := &connectField{Type: "struct", Name: base + ".Envelope", Fields: []*connectField{
		rowSchema(memberBefore), rowSchema(memberAfter), source, str(memberOp, false),
		{Type: "int64", Optional: true, Field: "ts_ms"},
		{Type: "int64", Optional: true, Field: "ts_us"},
		{Type: "int64", Optional: true, Field: "ts_ns"},
		{Type: "struct", Optional: true, Field: memberTransaction, Name: "event.block", Fields: []*connectField{
			str("id", false), {Type: "int64", Field: memberTotalOrder}, {Type: "int64", Field: "data_collection_order"},
			{Type: "int64", Optional: true, Field: memberKeyOrder},
		}},
		{Type: "array", Optional: true, Field: memberUnchanged, Items: &connectField{Type: "string"}},
	}}
	k, _ := json.Marshal(keySchema)
	v, _ := json.Marshal(value)
	s := tableSchemas{key: k, value: v}
	et.schemas = &s
	return s
}

// snapshotValues are the values Debezium declares for source.snapshot; scoop
// writes every one of them.
const snapshotValues = "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"

// sourceSchema is the schema of the source block: Debezium's
// io.debezium.connector.postgresql.Source, field for field and in its
// order, then scoop's commit_lsn.
func sourceSchema() *connectField {
	str := func(field string, optional bool) *connectField {
		return &connectField{Type: "string", Optional: optional, Field: field}
	}
	i64 := func(field string, optional bool) *connectField {
		return &connectField{Type: "int64", Optional: optional, Field: field}
	}
	snapshot := &connectField{Type: "string", Optional: true, Field: "snapshot", Name: "io.debezium.data.Enum", Version: 1,
		Parameters: map[string]string{"allowed": snapshotValues}, Default: SnapshotFalse}
	return &connectField{Type: "struct", Field: memberSource, Name: "io.debezium.connector.postgresql.Source", Fields: []*connectField{
		str("version", false), str("connector", false), str("name", false), i64(memberTsMs, false),
		snapshot, str("db", false), str("sequence", true), i64(memberTsUs, true), i64("ts_ns", true),
		str("schema", false), str("table", false),
		i64("txId", true), i64(memberLSN, true), i64("xmin", true),
		i64(memberCommitLSN, true),
	}}
}
