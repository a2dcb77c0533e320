package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/scoop-cdc/scoop/pipeline"
)

// writeCopyValue must write what pgText then writeCopyText write (and fail
// as they fail) for every value and column kind: a seeded mix of values
// that take its own paths and values that fall back to pgText.
func TestWriteCopyValueAgreesWithPgText(t *testing.T) {
	cols := []pipeline.Column{
		{BaseType: "text"}, {BaseType: "int8"}, {BaseType: "numeric"}, {BaseType: "bool"}, {BaseType: "jsonb"},
		{BaseType: "bytea"}, {BaseType: "date"}, {BaseType: "timestamp"}, {BaseType: "time"}, {BaseType: "timestamptz"},
		{BaseType: "_text", Array: true, Elem: "text"}, {BaseType: "_int4", Array: true, Elem: "int4"},
		{BaseType: "text", EventType: "date"}, {BaseType: "varchar"},
	}
	r := rand.New(rand.NewPCG(3, 5))
	pieces := []string{"a", "Z", " ", "\t", "\n", "\r", "\\", `"`, "é", "☃", "{", "}", ",", "0", "9", "-", ":", "\x01"}
	str := func() string {
		var b bytes.Buffer
		for range r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	values := []string{"", "null", "0", "-1", "19000", "1700000000000000", "86399999999", "true", "false", "1.5e3",
		`""`, `"plain"`, `"a\tb"`, `"a\\b"`, `"AAEC"`, `"not base64!"`, `{"k":"v\tw"}`, `[1,2,3]`, `["a","b\\c",null]`, `[]`, `"2024-01-02"`,
		// Not valid JSON, but nothing before the sink rejects a raw
		// control character in a string: it must still be escaped.
		"\"a\tb\rc\nd\"", "{\"k\":\"\t\r\n\"}", "\"x\x01\""}
	for range 3000 {
		s, _ := json.Marshal(str())
		values = append(values, string(s), fmt.Sprint(r.Int64N(1<<40)-1<<39), fmt.Sprintf(`{"x":%s}`, s), fmt.Sprintf(`[%s]`, s))
	}
	for _, col := range cols {
		for _, v := range values {
			raw := json.RawMessage(v)
			var want bytes.Buffer
			text, wantErr := pgText(col, raw)
			switch {
			case wantErr != nil:
			case text == nil:
				want.WriteString(`\N`)
			default:
				writeCopyText(&want, text.(string))
			}
			var got bytes.Buffer
			err := writeCopyValue(&got, col, raw)
			if (err != nil) != (wantErr != nil) || (err != nil && err.Error() != wantErr.Error()) {
				t.Fatalf("%s %q: error %v, pgText's %v", col.BaseType, v, err, wantErr)
			}
			if err == nil && got.String() != want.String() {
				t.Fatalf("%s (event type %q) %q: wrote %q, pgText and writeCopyText %q", col.BaseType, col.EventType, v, got.String(), want.String())
			}
		}
	}
}

// writeCopyText escapes exactly backslash, tab, newline and carriage return
// (COPY's text format), for strings and bytes alike, appending to what the
// buffer holds; checked against a byte-at-a-time escape over seeded values.
func TestWriteCopyTextEscapes(t *testing.T) {
	escape := func(v string) string {
		var b bytes.Buffer
		for i := 0; i < len(v); i++ {
			switch v[i] {
			case '\\':
				b.WriteString(`\\`)
			case '\t':
				b.WriteString(`\t`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			default:
				b.WriteByte(v[i])
			}
		}
		return b.String()
	}
	r := rand.New(rand.NewPCG(7, 11))
	pieces := []string{"a", "\t", "\n", "\r", "\\", "é", `"`, "\x00", "\x01", "xyz"}
	values := []string{"", "\\", "\t\t", "a\\tb", "\r\n", "plain"}
	for range 2000 {
		var b bytes.Buffer
		for range r.IntN(40) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		values = append(values, b.String())
	}
	for _, v := range values {
		want := "prefix|" + escape(v)
		var s, b bytes.Buffer
		s.WriteString("prefix|")
		b.WriteString("prefix|")
		writeCopyText(&s, v)
		writeCopyText(&b, []byte(v))
		if s.String() != want || b.String() != want {
			t.Fatalf("%q: string %q, bytes %q, want %q", v, s.String(), b.String(), want)
		}
	}
}

// writeCopyText allocates nothing once the buffer has room, escapes or not
// (it runs for every value of every row the sink stages).
func TestWriteCopyTextNoAllocs(t *testing.T) {
	var buf bytes.Buffer
	buf.Grow(1 << 16)
	v := "a\tb\\c\nd\re plain text after the escapes"
	if n := testing.AllocsPerRun(100, func() {
		buf.Reset()
		writeCopyText(&buf, v)
		writeCopyText(&buf, []byte(v)[:len(v)-3])
	}); n > 1 {
		t.Fatalf("%.0f allocations per run, want at most 1 (the []byte conversion)", n)
	}
}
