package postgres

import (
	"bytes"
	"encoding/json"

	"github.com/scoop-cdc/scoop/pipeline"
)

// writeCopyValue writes an event's value for col in COPY's text format (\N
// for null), as the staging COPY reads it: what pgText then writeCopyText
// write, without a string made (and boxed) per value for the values most
// events carry (numbers, booleans, JSON, strings without escapes), which go
// from the event's bytes straight into buf. Arrays, bytea and escaped
// strings take pgText.
func writeCopyValue(buf *bytes.Buffer, col pipeline.Column, raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		buf.WriteString(`\N`)
		return nil
	}
	if !col.Array && col.BaseType != "bytea" {
		v, err := col.EventValue(raw) // Debezium's temporal numbers as text
		if err != nil {
			return err
		}
		switch {
		case v[0] != '"': // number, bool, object, array (json columns)
			writeCopyText(buf, v)
			return nil
		case bytes.IndexByte(v, '\\') < 0: // a string with nothing escaped
			writeCopyText(buf, v[1:len(v)-1])
			return nil
		}
	}
	v, err := pgText(col, raw)
	if err != nil {
		return err
	}
	if v == nil {
		buf.WriteString(`\N`)
		return nil
	}
	writeCopyText(buf, v.(string))
	return nil
}
