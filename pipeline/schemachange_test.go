package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/scoop-cdc/scoop/schema"
)

func TestCheckColumns(t *testing.T) {
	target := map[string]Column{"id": {Name: "id", Key: true}, "note": {Name: "note"}}
	ok := []Change{{Op: schema.OpCreate, After: map[string]json.RawMessage{"id": json.RawMessage(`1`), "note": json.RawMessage(`"a"`)}}, {Op: schema.OpDelete}, {Op: schema.OpTruncate}}
	if err := CheckColumns(ok, target); err != nil {
		t.Fatal(err)
	}
	batch := append(ok, Change{Op: schema.OpUpdate, After: map[string]json.RawMessage{"id": json.RawMessage(`1`), "Extra Col": json.RawMessage(`2`), "b": json.RawMessage(`null`)}})
	err := fmt.Errorf("mapping m: %w", CheckColumns(batch, target))
	if !errors.Is(err, ErrSchemaChanged) || IsPermanent(err) {
		t.Fatalf("not a schema change, or permanent: %v", err)
	}
	var sc *SchemaChangedError
	if !errors.As(err, &sc) || !reflect.DeepEqual(sc.Columns, []string{"Extra Col", "b"}) {
		t.Fatalf("columns: %+v", sc)
	}
	if want := `mapping m: source schema changed: events carry columns the target does not have (columns "Extra Col", "b")`; err.Error() != want {
		t.Fatalf("error text\n got %s\nwant %s", err, want)
	}
}

func TestTargetDiff(t *testing.T) {
	old := Target{Columns: []Column{{Name: "id", SQLType: "integer", BaseType: "int4", Key: true}, {Name: "code", SQLType: "integer", BaseType: "int4"}, {Name: "gone", SQLType: "text", BaseType: "text"}, {Name: "same", SQLType: "text", BaseType: "text"}}}
	cur := Target{Columns: []Column{{Name: "id", SQLType: "integer", BaseType: "int4", Key: true}, {Name: "code", SQLType: "text", BaseType: "text"}, {Name: "same", SQLType: "text", BaseType: "text"}, {Name: "new", SQLType: "date", BaseType: "date"}}}
	if got := TargetDiff(old, cur); !reflect.DeepEqual(got, []string{"code", "gone", "new"}) {
		t.Fatalf("diff %v", got)
	}
	if got := TargetDiff(cur, cur); len(got) != 0 {
		t.Fatalf("diff of equal targets %v", got)
	}
	if !cur.HasColumn("new") || cur.HasColumn("gone") {
		t.Fatal("HasColumn")
	}
}
