package postgres

import (
	"context"
	"fmt"

	"github.com/scoop-cdc/scoop/pipeline"
)

// DescribeColumns reads a monolith table's columns for a sink's target
// definition: SQL type, base type (domains resolved), array element type and
// key membership.
func DescribeColumns(ctx context.Context, url string, name TableName) ([]pipeline.Column, error) {
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	t, err := describeTable(ctx, conn, name)
	if err != nil {
		return nil, err
	}
	types, err := loadTypes(ctx, conn)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, `
		SELECT a.attname,
		       format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END,
		                   CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END),
		       a.attnotnull
		FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, t.OID)
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", name, err)
	}
	sqlTypes := map[string]string{}
	notNull := map[string]bool{}
	for rows.Next() {
		var n, ty string
		var nn bool
		if err := rows.Scan(&n, &ty, &nn); err != nil {
			rows.Close()
			return nil, fmt.Errorf("describe %s: %w", name, err)
		}
		sqlTypes[n], notNull[n] = ty, nn
	}
	rows.Close()
	cols := make([]pipeline.Column, 0, len(t.Columns))
	for _, c := range t.Columns {
		base := schemaBase(types, c.Type)
		col := pipeline.Column{Name: c.Name, Source: c.Name, SQLType: sqlTypes[c.Name], BaseType: base.Name, Key: c.Key, NotNull: notNull[c.Name]}
		// Enums and other user types do not exist in a service store: they
		// travel as text.
		if base.Kind == 'e' || base.Kind == 'c' {
			col.SQLType = "text"
		}
		if base.Category == 'A' && base.Elem != 0 {
			col.Array = true
			elem := schemaBase(types, base.Elem)
			col.Elem = elem.Name
			if elem.Kind == 'e' || elem.Kind == 'c' {
				col.SQLType, col.Elem = "text[]", "text"
			}
		}
		cols = append(cols, col)
	}
	return cols, nil
}
