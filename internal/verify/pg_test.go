package verify_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/internal/verify"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// TestRangeHashSeesWhatCountsMiss: differences that keep a range's row
// count, and that a hash summing the columns' hashes separately would miss
// (a NULL against an empty text, two columns' values swapped within a row,
// one column's values swapped between two rows), make the range's hash
// differ, and verify names exactly those keys. One range holds the whole
// table, so only the hash sum can show them.
func TestRangeHashSeesWhatCountsMiss(t *testing.T) {
	testenv.Require(t)
	ctx := context.Background()
	table := testenv.Name("vhash")
	q := schema.QuoteIdent(table)
	mono, svc := testenv.Conn(t, "monolith"), testenv.Conn(t, "service")
	t.Cleanup(func() {
		mono.Exec(context.Background(), "DROP TABLE IF EXISTS "+q)
		svc.Exec(context.Background(), "DROP TABLE IF EXISTS "+q)
	})
	rows := `(1, '', 'x'), (2, 'a', 'b'), (3, 'c', 'd'), (4, 'e', 'f'), (5, NULL, 'g'), (6, 'h', 'i')`
	for _, sql := range []string{`CREATE TABLE %s (id int PRIMARY KEY, a text, b text)`, `INSERT INTO %s VALUES ` + rows} {
		testenv.Exec(t, mono, fmt.Sprintf(sql, q))
		testenv.Exec(t, svc, fmt.Sprintf(sql, q))
	}
	cfg := verify.Config{SourceURL: testenv.PGURL("monolith"), StoreURL: testenv.PGURL("service"),
		Mapping: pipeline.Mapping{Name: "hash", Source: "public." + table, Store: "svc"}, ChunkRows: 1000}
	// Each difference alone in the table (once one row of a range differs,
	// the range is compared row by row and would show the others too).
	for _, c := range []struct{ what, damage, undo, want string }{
		{"'' -> NULL", `UPDATE %s SET a = NULL WHERE id = 1`, `UPDATE %s SET a = '' WHERE id = 1`, `{"id":"1"}`},
		{"NULL -> ''", `UPDATE %s SET a = '' WHERE id = 5`, `UPDATE %s SET a = NULL WHERE id = 5`, `{"id":"5"}`},
		{"swapped within a row", `UPDATE %s SET a = b, b = a WHERE id = 2`, `UPDATE %s SET a = b, b = a WHERE id = 2`, `{"id":"2"}`},
		{"swapped between rows", `UPDATE %s SET a = CASE id WHEN 3 THEN 'e' ELSE 'c' END WHERE id IN (3, 4)`,
			`UPDATE %s SET a = CASE id WHEN 3 THEN 'c' ELSE 'e' END WHERE id IN (3, 4)`, `{"id":"3"},{"id":"4"}`},
	} {
		testenv.Exec(t, svc, fmt.Sprintf(c.damage, q))
		rep, err := verify.Run(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range rep.Diffs {
			if d.Kind != verify.Different {
				t.Errorf("%s: %s %s", c.what, d.Kind, d.Key)
			}
			got = append(got, d.Key.String())
		}
		if strings.Join(sorted(got), ",") != c.want || rep.Rows != 6 {
			t.Errorf("%s: %d rows, different %v, want %s", c.what, rep.Rows, got, c.want)
		}
		testenv.Exec(t, svc, fmt.Sprintf(c.undo, q))
	}
	if rep, err := verify.Run(ctx, cfg); err != nil || !rep.Equal() {
		t.Fatalf("after the undo: %+v, %v", rep, err)
	}
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}
