package conformance

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// The PostgreSQL sink renders a COPY's text as the server reads it, a chunk
// at a time: rows wider than a chunk, and escapes on either side of a chunk's
// end, must arrive as they were.
func TestPostgresSinkCopyWideRows(t *testing.T) {
	testenv.Require(t)
	st := pgStore(postgres.MethodCopy)
	table := testenv.Name("copywide")
	s := st.open(t, basicTarget(table), table)
	var batch []pipeline.Change
	vals := map[int]string{}
	for i := 1; i <= 12; i++ {
		// 100 KB and more: wider than the 64 KiB the COPY reads at a time;
		// an escape every few bytes, shifted by the row's number.
		v := strings.Repeat("x", i) + strings.Repeat("ab\\c\td\ne\rf", 10000+i*37)
		vals[i] = v
		batch = append(batch, change(schema.OpCreate, i, fmt.Sprintf(`{"id":%d,"name":%q,"n":%d}`, i, v, i), 1, int64(i)))
	}
	apply(t, s, batch...)
	for i, v := range vals {
		want(t, st, table, i, "name", v)
	}
}

// A value the sink cannot turn into PostgreSQL's text, found while the COPY
// streams, abandons the COPY and fails the batch permanently, naming the
// change and the column (its batch is then split to isolate the change);
// the next batch is applied.
func TestPostgresSinkCopyBadValue(t *testing.T) {
	testenv.Require(t)
	st := pgStore(postgres.MethodCopy)
	table := testenv.Name("copybad")
	target := basicTarget(table)
	target.Columns = append(target.Columns, pipeline.Column{Name: "b", Source: "b", SQLType: "bytea", BaseType: "bytea"})
	s := st.open(t, target, table)
	var bad, good []pipeline.Change
	for i := 1; i <= 12; i++ {
		b := `"AP8Q"`
		if i == 9 {
			b = `"not base64!"`
		}
		bad = append(bad, change(schema.OpCreate, i, fmt.Sprintf(`{"id":%d,"name":"x","n":%d,"b":%s}`, i, i, b), 1, int64(i)))
		good = append(good, change(schema.OpCreate, 100+i, fmt.Sprintf(`{"id":%d,"name":"y","n":%d,"b":"AP8Q"}`, 100+i, i), 2, int64(100+i)))
	}
	err := s.Apply(context.Background(), bad)
	if err == nil || !pipeline.IsPermanent(err) || !strings.Contains(err.Error(), `offset 0/9: column "b": bytea: illegal base64 data`) {
		t.Fatalf("batch with a bad bytea value: got %v, want a permanent error naming the change, the column and the value's fault", err)
	}
	wantAbsent(t, st, table, 1)
	apply(t, s, good...)
	want(t, st, table, 112, "b", `\x00ff10`)
}
