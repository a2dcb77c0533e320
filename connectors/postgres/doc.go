// Package postgres is scoop's PostgreSQL connector.
//
// Source: owns a publication and a logical replication slot (pgoutput) in the
// monolith, takes a consistent initial snapshot from the slot's exported
// snapshot, then streams committed transactions. It emits pipeline.Items in
// commit order: the records of a transaction, then a Mark with the
// transaction's end LSN. The slot's flushed LSN is moved only by Ack, which
// the forwarder calls once Kafka acknowledged everything before that Mark.
// Transactions applied under scoop's replication origin are skipped, so
// scoop never captures its own writes.
//
// Every session scoop opens uses DateStyle=ISO, TimeZone=UTC,
// IntervalStyle=iso_8601, extra_float_digits=3 and bytea_output=hex, so the
// text form of values is the same in the snapshot and in the stream.
package postgres
