package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// TestSourceExprMatchesEvents: for columns converted to text, the SQL that
// verify compares with is the text the sink writes from the change event
// (the event's value, read back by pipeline.Column.EventValue), for each
// type whose event form is not PostgreSQL's text.
func TestSourceExprMatchesEvents(t *testing.T) {
	testenv.Require(t)
	c := testenv.Conn(t, "monolith")
	ctx := context.Background()
	cases := []struct {
		typ  string
		oid  uint32
		vals []string
	}{
		{"interval", 1186, []string{"1 year 2 mons 3 days 04:05:06.5", "0", "100 hours", "-1 year -2 mons +3 days -04:05:06.5", "-0.5 sec", "1.5 days", "00:00:00.000001"}},
		{"timetz", 1266, []string{"12:00:00+05:30", "00:00:00+00", "01:02:03.456789-03", "23:59:59+14"}},
		{"date", 1082, []string{"2024-02-29", "0044-03-15 BC", "infinity"}},
		{"time", 1083, []string{"23:59:59.999999", "24:00:00", "00:00:00"}},
		{"timestamp", 1114, []string{"2024-02-29 12:34:56.789", "0044-03-15 12:00:00 BC", "-infinity"}},
	}
	types := schema.TypeMap{}
	for _, tc := range cases {
		types[tc.oid] = schema.TypeInfo{OID: tc.oid, Name: tc.typ, Kind: 'b', Delim: ','}
	}
	for _, tc := range cases {
		src := pipeline.Column{Source: "v", BaseType: tc.typ}
		dst := pipeline.Column{Name: "v", SQLType: "text", BaseType: "text", EventType: tc.typ}
		expr, err := sourceExpr(src, dst, map[string]string{"v": "text"})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range tc.vals {
			var verifyText, pgText string
			// The source reads values with IntervalStyle iso_8601 (schema.AppendJSON).
			q := fmt.Sprintf(`SELECT %s, s.v::text FROM (SELECT $1::%s AS v) s`, expr, tc.typ)
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `SET LOCAL intervalstyle = iso_8601`); err != nil {
				t.Fatal(err)
			}
			err = tx.QueryRow(ctx, q, v).Scan(&verifyText, &pgText)
			tx.Rollback(ctx)
			if err != nil {
				t.Fatalf("%s %q: %v", tc.typ, v, err)
			}
			event, err := schema.AppendJSON(nil, types, tc.oid, []byte(pgText))
			if err != nil {
				t.Fatalf("%s %q: %v", tc.typ, v, err)
			}
			raw, err := dst.EventValue(event)
			if err != nil {
				t.Fatalf("%s %q: %v", tc.typ, v, err)
			}
			var sinkText string
			if err := json.Unmarshal(raw, &sinkText); err != nil {
				t.Fatalf("%s %q: event value %s: %v", tc.typ, v, raw, err)
			}
			if sinkText != verifyText {
				t.Errorf("%s %q: the sink writes %q, verify compares with %q", tc.typ, v, sinkText, verifyText)
			}
		}
	}
}
