package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/scoop-cdc/scoop/schema"
)

// ErrPrecondition marks a monolith that scoop refuses to stream from until
// the operator changes something; the message says what.
var ErrPrecondition = errors.New("source precondition")

// TableName is a schema-qualified table.
type TableName struct{ Schema, Name string }

func (t TableName) String() string { return t.Schema + "." + t.Name }

// loadTypes reads pg_type: every built-in and user type (enums, domains,
// ranges, arrays of them).
func loadTypes(ctx context.Context, conn *pgx.Conn) (schema.TypeMap, error) {
	rows, err := conn.Query(ctx, `SELECT oid, typname, typtype::text, typcategory::text, typelem, typbasetype, typdelim::text FROM pg_type`)
	if err != nil {
		return nil, fmt.Errorf("load pg_type: %w", err)
	}
	defer rows.Close()
	m := schema.TypeMap{}
	for rows.Next() {
		var t schema.TypeInfo
		var kind, cat, delim string
		if err := rows.Scan(&t.OID, &t.Name, &kind, &cat, &t.Elem, &t.Base, &delim); err != nil {
			return nil, fmt.Errorf("scan pg_type: %w", err)
		}
		t.Kind, t.Category, t.Delim = kind[0], cat[0], delim[0]
		m[t.OID] = t
	}
	return m, rows.Err()
}

// checkServer refuses a server without logical decoding or a role without
// the REPLICATION attribute.
func checkServer(ctx context.Context, conn *pgx.Conn) error {
	var walLevel string
	if err := conn.QueryRow(ctx, `SHOW wal_level`).Scan(&walLevel); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return fmt.Errorf("%w: wal_level is %q; set wal_level = logical in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL", ErrPrecondition, walLevel)
	}
	var role string
	var canReplicate bool
	if err := conn.QueryRow(ctx, `SELECT rolname, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&role, &canReplicate); err != nil {
		return fmt.Errorf("read role attributes: %w", err)
	}
	if !canReplicate {
		return fmt.Errorf("%w: role %q lacks the REPLICATION attribute; run ALTER ROLE %s WITH REPLICATION as a superuser", ErrPrecondition, role, schema.QuoteIdent(role))
	}
	return nil
}

// describeTable reads a table's columns (without generated ones, which
// pgoutput does not send) and its key: the primary key, else the replica
// identity index, else every column under REPLICA IDENTITY FULL. A table
// with none of these is refused.
func describeTable(ctx context.Context, conn *pgx.Conn, name TableName) (*schema.Table, error) {
	var oid uint32
	var ident string
	err := conn.QueryRow(ctx, `
		SELECT c.oid, c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, name.Schema, name.Name).Scan(&oid, &ident)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: table %s does not exist in the monolith; create it or fix the mapping's source", ErrPrecondition, name)
	}
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", name, err)
	}
	rows, err := conn.Query(ctx, `
		SELECT a.attname, a.atttypid, a.atttypmod,
		       COALESCE(a.attnum = ANY(i.indkey), false)
		FROM pg_attribute a
		LEFT JOIN LATERAL (
			SELECT indkey::int2[] AS indkey FROM pg_index
			WHERE indrelid = a.attrelid AND (indisprimary OR ($2 = 'i' AND indisreplident))
			ORDER BY indisprimary DESC LIMIT 1) i ON true
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, oid, ident)
	if err != nil {
		return nil, fmt.Errorf("describe columns of %s: %w", name, err)
	}
	defer rows.Close()
	t := &schema.Table{OID: oid, Schema: name.Schema, Name: name.Name}
	hasKey := false
	for rows.Next() {
		var c schema.Column
		if err := rows.Scan(&c.Name, &c.Type, &c.TypeMod, &c.Key); err != nil {
			return nil, fmt.Errorf("scan columns of %s: %w", name, err)
		}
		hasKey = hasKey || c.Key
		t.Columns = append(t.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("describe columns of %s: %w", name, err)
	}
	if ident == "f" {
		if !hasKey {
			for i := range t.Columns {
				t.Columns[i].Key = true
			}
		}
		return t, nil
	}
	if !hasKey || ident == "n" {
		return nil, fmt.Errorf("%w: table %s has no primary key and no replica identity, so its updates and deletes cannot be keyed; add a primary key, or run ALTER TABLE %s REPLICA IDENTITY FULL",
			ErrPrecondition, name, schema.QuoteQualified(name.Schema, name.Name))
	}
	return t, nil
}

// quoteTables renders a list of tables for DDL.
func quoteTables(tables []TableName) string {
	parts := make([]string, len(tables))
	for i, t := range tables {
		parts[i] = schema.QuoteQualified(t.Schema, t.Name)
	}
	return strings.Join(parts, ", ")
}

func schemaBase(types schema.TypeMap, oid uint32) schema.TypeInfo { return schema.BaseType(types, oid) }

func sortStrings(s []string) []string { sort.Strings(s); return s }
