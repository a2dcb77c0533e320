// Package servicewriter is what a service that owns a Cassandra table
// during scoop's limbo period (a mapping with direction: both) writes
// through. Cassandra has no change stream that a Go program can read, so the
// service publishes each of its writes as a change event on the mapping's
// reverse topic (pipeline.ReverseTopic: <prefix>.reverse.<mapping>), and
// scoop's reverse flow applies those events into the monolith and into the
// Cassandra table. The event log is the single source of truth.
//
// Contract of Upsert and Delete, in this order:
//
//  1. the row is checked against the table's columns and CQL types; a bad
//     row is refused before anything is written anywhere;
//  2. the write gets its timestamp: the Clock in microseconds, strictly
//     greater than the writer's previous one (last+1 µs when the clock did
//     not move or went back), so two writes of one writer never tie;
//  3. the change event is published and acknowledged by every in-sync
//     replica (acks=all). On failure the call returns an error and nothing
//     was written to Cassandra;
//  4. the same row is written to Cassandra USING TIMESTAMP of the event's
//     commit time. scoop writes the event there too, at the same timestamp,
//     so a crash or an error between 3 and 4 loses nothing (the call then
//     returns an error that IsPublished recognises).
//
// Events of one key are published in the order of their timestamps, to one
// partition (the key hashed with Murmur2, as scoop's producer does). Writes
// of different keys run concurrently. docs/servicewriter.md has the event
// format, the failure cases and the clock requirements.
//
// A Writer is safe for concurrent use. It never closes the gocql session it
// was given.
package servicewriter
