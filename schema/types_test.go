package schema

import (
	"encoding/json"
	"testing"
)

func TestAppendJSON(t *testing.T) {
	cases := []struct {
		oid  uint32
		text string
		want string
	}{
		{16, "t", `true`},
		{16, "f", `false`},
		{20, "-9223372036854775808", `-9223372036854775808`},
		{701, "1.5e+300", `1.5e+300`},
		{701, "NaN", `"NaN"`},
		{700, "-Infinity", `"-Infinity"`},
		{1700, "12345678901234567890.123456789", `"12345678901234567890.123456789"`},
		{25, "he said \"hi\"\n\t\\", `"he said \"hi\"\n\t\\"`},
		{25, "\x01ctl", `"\u0001ctl"`},
		{17, `\x00ff10`, `"AP8Q"`},
		// Debezium's types (docs/events.md); the numbers were checked with
		// PostgreSQL (date - date '1970-01-01', extract(epoch from ...)).
		{114, `{"a": [1, 2]}`, `"{\"a\": [1, 2]}"`},
		{3802, `{"a": [1, 2]}`, `"{\"a\": [1, 2]}"`},
		{3802, `"s"`, `"\"s\""`},
		{1184, "2024-02-29 23:59:59.123456+00", `"2024-02-29T23:59:59.123456Z"`},
		{1184, "infinity", `"infinity"`},
		{1114, "2024-02-29 23:59:59", `1709251199000000`},
		{1114, "2024-02-29 12:34:56.789", `1709210096789000`},
		{1114, "1969-12-31 23:59:59.999999", `-1`},
		{1114, "0044-03-15 12:00:00 BC", `-63517780800000000`},
		{1114, "infinity", `9223372036854775807`},
		{1114, "-infinity", `-9223372036854775808`},
		{1082, "2024-02-29", `19782`},
		{1082, "1970-01-01", `0`},
		{1082, "0044-03-15 BC", `-735160`},
		{1082, "infinity", `2147483647`},
		{1082, "-infinity", `-2147483648`},
		{1083, "23:59:59.999999", `86399999999`},
		{1083, "00:00:00", `0`},
		{1083, "24:00:00", `86400000000`},
		{1266, "12:00:00+05:30", `"12:00:00+05:30"`},
		{1266, "01:02:03.45-03", `"01:02:03.45-03:00"`},
		{1266, "00:00:00+00", `"00:00:00Z"`},
		{1186, "P1Y2M3DT4H5M6.5S", `"P1Y2M3DT4H5M6.5S"`},
		{1186, "P-1Y-2M3DT-4H-5M-6.5S", `"P-1Y-2M3DT-4H-5M-6.5S"`},
		{1186, "PT0S", `"P0Y0M0DT0H0M0S"`},
		{1186, "PT100H", `"P0Y0M0DT100H0M0S"`},
		{1186, "P1DT12H", `"P0Y0M1DT12H0M0S"`},
		{1186, "PT-0.5S", `"P0Y0M0DT0H0M-0.5S"`},
		{2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{1182, "{2024-02-29,NULL,infinity}", `[19782,null,2147483647]`},
		{3807, `{"{\"k\": 1}",NULL}`, `["{\"k\": 1}",null]`},
		{1007, "{1,2,NULL}", `[1,2,null]`},
		{1007, "{{1,2},{3,4}}", `[[1,2],[3,4]]`},
		{1007, "[0:1]={7,8}", `[7,8]`},
		{1007, "{}", `[]`},
		{1009, `{"a b","c\"d",NULL,"NULL",e}`, `["a b","c\"d",null,"NULL","e"]`},
		{1231, "{1.10,NaN}", `["1.10","NaN"]`},
		{1020, "{(1,1),(0,0);(2,2),(1,1)}", `["(1,1),(0,0)","(2,2),(1,1)"]`},
		{90001, "42", `42`},
		{90002, "happy", `"happy"`},
		{999999, "whatever", `"whatever"`},
	}
	for _, c := range cases {
		got, err := AppendJSON(nil, testTypes, c.oid, []byte(c.text))
		if err != nil {
			t.Errorf("oid %d %q: %v", c.oid, c.text, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("oid %d %q: got %s, want %s", c.oid, c.text, got, c.want)
		}
		if !json.Valid(got) {
			t.Errorf("oid %d %q: invalid JSON %s", c.oid, c.text, got)
		}
	}
}

func TestAppendJSONErrors(t *testing.T) {
	cases := []struct {
		oid  uint32
		text string
		want string
	}{
		{16, "maybe", `bool: unexpected text "maybe"`},
		{3802, `{"a":`, `jsonb: invalid JSON text`},
		{1007, `{1,2`, `array _int4: unterminated array`},
		{1009, `{"abc}`, `array _text: unterminated quoted element`},
		{17, `\xzz`, `bytea: encoding/hex: invalid byte: U+007A 'z'`},
		{1082, "2024-2-29", `date: unexpected text "2024-2-29"`},
		{1114, "2024-02-29", `timestamp: unexpected text "2024-02-29"`},
		{1114, "2024-02-29 12:34", `timestamp: unexpected text "2024-02-29 12:34"`},
		{1083, "12:00:00+01", `time: unexpected text "12:00:00+01"`},
		{1266, "12:00:00", `timetz: unexpected text "12:00:00"`},
		{1266, "12:00:00+5", `timetz: unexpected text "12:00:00+5"`},
		{1186, "1 year", `interval: unexpected text "1 year"`},
		{1186, "P1.5Y", `interval: unexpected text "P1.5Y"`},
	}
	for _, c := range cases {
		_, err := AppendJSON(nil, testTypes, c.oid, []byte(c.text))
		if err == nil || err.Error() != c.want {
			t.Errorf("oid %d %q: got error %v, want %q", c.oid, c.text, err, c.want)
		}
	}
}

func FuzzAppendJSONArray(f *testing.F) {
	f.Add(`{1,2,NULL}`)
	f.Add(`{"a\"b",NULL,"c"}`)
	f.Add(`[1:2]={{1,2},{3,4}}`)
	f.Fuzz(func(t *testing.T, s string) {
		for _, oid := range []uint32{1007, 1009, 1231} {
			out, err := AppendJSON(nil, testTypes, oid, []byte(s))
			if err == nil && !json.Valid(out) {
				t.Fatalf("oid %d %q: produced invalid JSON %s", oid, s, out)
			}
		}
	})
}

func TestQuoteIdent(t *testing.T) {
	if got := QuoteIdent(`we"ird`); got != `"we""ird"` {
		t.Fatalf("got %s", got)
	}
	if got := QuoteQualified("public", "Users"); got != `"public"."Users"` {
		t.Fatalf("got %s", got)
	}
	if err := CheckIdent("a\x00b"); err == nil || err.Error() != `bad identifier: "a\x00b" holds a control character` {
		t.Fatalf("got %v", err)
	}
}
