package schema

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// TypeInfo describes a PostgreSQL type as found in pg_type.
type TypeInfo struct {
	OID      uint32
	Name     string // typname, e.g. "int4", "_text", "mood"
	Kind     byte   // typtype: 'b' base, 'd' domain, 'e' enum, 'r' range, 'm' multirange, 'c' composite
	Category byte   // typcategory: 'A' array, 'N' numeric, 'S' string, ...
	Elem     uint32 // element type of an array
	Base     uint32 // base type of a domain
	Delim    byte   // array element delimiter (',' except box)
}

// Types resolves type OIDs. Implementations load pg_type; Builtin covers the
// built-in types so that pure code and tests need no database.
type Types interface {
	Type(oid uint32) (TypeInfo, bool)
}

// TypeMap is a Types backed by a map.
type TypeMap map[uint32]TypeInfo

// Type implements Types.
func (m TypeMap) Type(oid uint32) (TypeInfo, bool) {
	t, ok := m[oid]
	return t, ok
}

// resolve follows domains down to their base type.
func resolve(types Types, oid uint32) TypeInfo {
	for i := 0; i < 16; i++ {
		t, ok := types.Type(oid)
		if !ok {
			return TypeInfo{OID: oid, Name: "unknown", Kind: 'b', Category: 'U', Delim: ','}
		}
		if t.Kind != 'd' || t.Base == 0 {
			return t
		}
		oid = t.Base
	}
	return TypeInfo{OID: oid, Name: "unknown", Kind: 'b', Category: 'U', Delim: ','}
}

// BaseType returns the type of oid with domains resolved to their base.
func BaseType(types Types, oid uint32) TypeInfo { return resolve(types, oid) }

// AppendJSON appends the JSON form of a value given in PostgreSQL's text
// output format (as sent by pgoutput, or read with text result format) for
// the type oid. The session that produced the text must use DateStyle=ISO,
// TimeZone=UTC, IntervalStyle=iso_8601 and extra_float_digits=3 (scoop sets
// them on every connection it reads from).
//
// The mapping is Debezium's PostgreSQL connector's (with
// decimal.handling.mode=string, time.precision.mode=adaptive_time_microseconds,
// interval.handling.mode=string), documented in docs/events.md:
//   - bool -> true/false; int2/int4/int8/oid -> number;
//   - float4/float8 -> number, or the strings "NaN", "Infinity", "-Infinity";
//   - numeric and money -> string (no float loss);
//   - json/jsonb -> the JSON text as a string;
//   - bytea -> base64 string;
//   - date -> days since the epoch; timestamp -> µs since the epoch;
//     time -> µs since midnight; timetz -> "15:04:05.999999Z" (UTC);
//     timestamptz -> "2006-01-02T15:04:05.999999Z"; interval -> "P1Y2M3DT4H5M6.5S"
//     (see temporal.go);
//   - arrays -> JSON arrays (nested for several dimensions, null elements kept);
//   - everything else (text, uuid, inet, enums, ranges, bit strings,
//     geometric types, ...) -> its text form as a JSON string.
func AppendJSON(dst []byte, types Types, oid uint32, text []byte) ([]byte, error) {
	return appendJSONOf(dst, types, resolve(types, oid), text)
}

// appendJSONOf is AppendJSON of a type already resolved.
func appendJSONOf(dst []byte, types Types, t TypeInfo, text []byte) ([]byte, error) {
	if t.Category == 'A' && t.Elem != 0 {
		return appendArrayJSON(dst, types, t, text)
	}
	return appendScalarJSON(dst, t, text)
}

func appendScalarJSON(dst []byte, t TypeInfo, text []byte) ([]byte, error) {
	switch t.Name {
	case "bool":
		switch string(text) {
		case "t", "true":
			return append(dst, "true"...), nil
		case "f", "false":
			return append(dst, "false"...), nil
		}
		return dst, fmt.Errorf("bool: unexpected text %q", text)
	case "int2", "int4", "int8", "oid", "xid", "cid", "xid8", "regproc", "regclass", "regtype":
		if _, err := strconv.ParseInt(string(text), 10, 64); err != nil {
			if _, err := strconv.ParseUint(string(text), 10, 64); err != nil {
				// regclass and friends print names, not numbers.
				return appendString(dst, text), nil
			}
		}
		return append(dst, text...), nil
	case "float4", "float8":
		switch string(text) {
		case "NaN", "Infinity", "-Infinity":
			return appendString(dst, text), nil
		}
		return append(dst, text...), nil
	case "json", "jsonb":
		// Debezium's io.debezium.data.Json: the JSON text as a string.
		if !json.Valid(text) {
			return dst, fmt.Errorf("%s: invalid JSON text", t.Name)
		}
		return appendString(dst, text), nil
	case "bytea":
		raw, err := decodeBytea(text)
		if err != nil {
			return dst, err
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, raw)
		return append(dst, '"'), nil
	case "timestamptz":
		return appendString(dst, isoTimestamp(text, true)), nil
	case "timestamp":
		return appendMicroTimestamp(dst, text)
	case "date":
		return appendDate(dst, text)
	case "time":
		return appendMicroTime(dst, text)
	case "timetz":
		return appendZonedTime(dst, text)
	case "interval":
		return appendInterval(dst, text)
	}
	return appendString(dst, text), nil
}

// isoTimestamp turns "2006-01-02 15:04:05.123+00" into "2006-01-02T15:04:05.123Z".
// Special values (infinity, BC dates) keep PostgreSQL's text.
func isoTimestamp(text []byte, zoned bool) []byte {
	if len(text) < 19 || text[10] != ' ' || (len(text) > 3 && string(text[len(text)-3:]) == " BC") {
		return text
	}
	out := make([]byte, 0, len(text)+1)
	out = append(out, text[:10]...)
	out = append(out, 'T')
	rest := text[11:]
	if zoned && len(rest) >= 3 && string(rest[len(rest)-3:]) == "+00" {
		out = append(out, rest[:len(rest)-3]...)
		return append(out, 'Z')
	}
	return append(out, rest...)
}

func decodeBytea(text []byte) ([]byte, error) {
	if len(text) >= 2 && text[0] == '\\' && text[1] == 'x' {
		out := make([]byte, hex.DecodedLen(len(text)-2))
		if _, err := hex.Decode(out, text[2:]); err != nil {
			return nil, fmt.Errorf("bytea: %w", err)
		}
		return out, nil
	}
	// Escape format (bytea_output = escape).
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		if text[i] != '\\' {
			out = append(out, text[i])
			continue
		}
		if i+1 < len(text) && text[i+1] == '\\' {
			out = append(out, '\\')
			i++
			continue
		}
		if i+3 < len(text) {
			v, err := strconv.ParseUint(string(text[i+1:i+4]), 8, 8)
			if err != nil {
				return nil, fmt.Errorf("bytea: bad escape at %d", i)
			}
			out = append(out, byte(v))
			i += 3
			continue
		}
		return nil, fmt.Errorf("bytea: truncated escape")
	}
	return out, nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendString appends s as a JSON string.
func AppendString(dst []byte, s string) []byte { return appendString(dst, []byte(s)) }
