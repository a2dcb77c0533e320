package schema

import (
	"encoding/json"
	"testing"
)

// TestTextJSON reads Debezium's temporal numbers back into the text
// PostgreSQL takes, and leaves the text forms of older events alone.
func TestTextJSON(t *testing.T) {
	cases := []struct{ typ, raw, want string }{
		{"date", `19782`, `"2024-02-29"`},
		{"date", `-735160`, `"0044-03-15 BC"`},
		{"date", `2147483647`, `"infinity"`},
		{"date", `-2147483648`, `"-infinity"`},
		{"date", `"2024-02-29"`, `"2024-02-29"`},
		{"timestamp", `1709210096789000`, `"2024-02-29T12:34:56.789"`},
		{"timestamp", `-1`, `"1969-12-31T23:59:59.999999"`},
		{"timestamp", `-63517780800000000`, `"0044-03-15 12:00:00 BC"`},
		{"timestamp", `9223372036854775807`, `"infinity"`},
		{"timestamp", `-9223372036854775808`, `"-infinity"`},
		{"timestamp", `"2024-02-29T12:34:56.789"`, `"2024-02-29T12:34:56.789"`},
		{"time", `86399999999`, `"23:59:59.999999"`},
		{"time", `86400000000`, `"24:00:00"`},
		{"time", `0`, `"00:00:00"`},
		{"date", `[19782,null,[0]]`, `["2024-02-29",null,["1970-01-01"]]`},
		{"date", `null`, `null`},
		{"int4", `19782`, `19782`},
		{"jsonb", `"{\"a\":1}"`, `"{\"a\":1}"`},
	}
	for _, c := range cases {
		got, err := TextJSON(c.typ, json.RawMessage(c.raw))
		if err != nil {
			t.Errorf("%s %s: %v", c.typ, c.raw, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("%s %s: got %s, want %s", c.typ, c.raw, got, c.want)
		}
	}
}

func TestTextJSONErrors(t *testing.T) {
	cases := []struct{ typ, raw, want string }{
		{"date", `1.5`, `date: 1.5 is not a whole number`},
		{"date", `4294967296`, `date: 4294967296 days is out of range`},
		{"time", `-1`, `time: -1 µs is not a time of day`},
		{"time", `86400000001`, `time: 86400000001 µs is not a time of day`},
		{"timestamp", `[1,`, `timestamp array: unexpected end of JSON input`},
	}
	for _, c := range cases {
		_, err := TextJSON(c.typ, json.RawMessage(c.raw))
		if err == nil || err.Error() != c.want {
			t.Errorf("%s %s: got error %v, want %q", c.typ, c.raw, err, c.want)
		}
	}
}

// TestConnectTypes checks the Kafka Connect schema of each type against
// what Debezium's PostgreSQL connector declares for it.
func TestConnectTypes(t *testing.T) {
	cases := []struct {
		oid       uint32
		typ, name string
		itemsName string
	}{
		{114, "string", "io.debezium.data.Json", ""},
		{3802, "string", "io.debezium.data.Json", ""},
		{142, "string", "io.debezium.data.Xml", ""},
		{2950, "string", "io.debezium.data.Uuid", ""},
		{1082, "int32", "io.debezium.time.Date", ""},
		{1114, "int64", "io.debezium.time.MicroTimestamp", ""},
		{1083, "int64", "io.debezium.time.MicroTime", ""},
		{1266, "string", "io.debezium.time.ZonedTime", ""},
		{1184, "string", "io.debezium.time.ZonedTimestamp", ""},
		{1186, "string", "io.debezium.time.Interval", ""},
		{1700, "string", "", ""}, // decimal.handling.mode=string
		{17, "bytes", "", ""},
		{90002, "string", "io.debezium.data.Enum", ""},
		{90001, "int32", "", ""},
		{26, "int64", "", ""}, // oid: up to 2^32-1
		{1182, "array", "", "io.debezium.time.Date"},
		{3807, "array", "", "io.debezium.data.Json"},
	}
	for _, c := range cases {
		f := connectType(testTypes, c.oid)
		if f.Type != c.typ || f.Name != c.name {
			t.Errorf("oid %d: got %s %q, want %s %q", c.oid, f.Type, f.Name, c.typ, c.name)
		}
		if c.itemsName != "" && (f.Items == nil || f.Items.Name != c.itemsName) {
			t.Errorf("oid %d: items %+v, want named %q", c.oid, f.Items, c.itemsName)
		}
	}
}
