// Package schema is scoop's model of tables, columns and PostgreSQL types, the
// conversion of PostgreSQL's text output into JSON, and the change-event
// envelope written to Kafka (compatible with Debezium's JSON envelope).
//
// It uses the standard library only. Decoding and encoding are pure: bytes in,
// bytes out, no I/O, so they are tested with fixtures and fuzzed.
package schema
