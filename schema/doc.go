// Package schema is scoop's model of tables, columns and PostgreSQL types, the
// conversion of PostgreSQL's text output into JSON, and the change-event
// envelope written to Kafka (compatible with Debezium's JSON envelope): the
// Encoder writes it, DecodeChange reads it back (a one-pass scanner for
// scoop's own layout, encoding/json for Kafka Connect wrapping and other
// producers). The envelope's member names are defined once, in envelope.go.
//
// It uses the standard library only. Decoding and encoding are pure: bytes in,
// bytes out, no I/O, so they are tested with fixtures and fuzzed.
package schema
