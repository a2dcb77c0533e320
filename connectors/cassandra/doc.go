// Package cassandra is scoop's Cassandra sink (gocql).
//
// Every write carries USING TIMESTAMP with the source commit time in
// microseconds, so a retried or replayed older event can never overwrite a
// newer one: Cassandra keeps the cell with the larger timestamp. Changes of
// one key inside a batch are collapsed to the last one first (at equal
// timestamps Cassandra would prefer a delete, or the larger value). Writes
// are prepared statements with token-aware routing and a bounded number in
// flight; there are no multi-partition batches.
package cassandra
