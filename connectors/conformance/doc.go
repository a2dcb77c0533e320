// Package conformance runs the same sink cases against every store scoop
// writes to (PostgreSQL and Cassandra), on the real servers: insert, update,
// delete, unchanged TOAST, all types, replay of old events, and a restart in
// the middle of a batch.
package conformance
