package schema

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadIdentifier is returned for names that scoop refuses to quote: empty
// names and names holding NUL or other control characters.
var ErrBadIdentifier = errors.New("bad identifier")

// CheckIdent rejects names that cannot be safely quoted.
func CheckIdent(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrBadIdentifier)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q holds a control character", ErrBadIdentifier, name)
		}
	}
	return nil
}

// QuoteIdent quotes a PostgreSQL or CQL identifier: it wraps the name in
// double quotes and doubles any embedded double quote. Both dialects use the
// same rule. Names are always quoted, never passed through "already quoted".
func QuoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// QuoteQualified quotes schema.name.
func QuoteQualified(schemaName, name string) string {
	return QuoteIdent(schemaName) + "." + QuoteIdent(name)
}

// QuoteLiteral quotes a string literal for PostgreSQL or CQL (single quotes
// doubled). Used only where the protocol offers no parameters (replication
// commands, DDL options).
func QuoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
