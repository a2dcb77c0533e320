// Package pipeline holds what scoop's stages share: change records on their
// way to Kafka, positions and their acknowledgement, the mappings that say
// which table goes to which store, and the small interfaces connectors
// implement.
//
// Contract of the forward path (monolith -> Kafka):
//   - the source emits Items in commit order: records, then a Mark carrying
//     the end LSN of the transaction they belong to (or a keepalive or
//     heartbeat position when no transaction is open);
//   - the Forwarder publishes records in order and calls the source's Ack with
//     a Mark only after the Publisher returned for every record before it
//     (Kafka acknowledged them with acks=all);
//   - so the slot's flushed LSN never passes an event that Kafka has not got.
//
// Contract of the apply path (Kafka -> store), Apply, its mirror:
//   - a Reader (owned and closed by the caller) yields messages in order per
//     partition; Apply decodes and shapes them and hands each batch to the
//     Sink in that order, reading and decoding the next batch while the
//     Sink writes one (one batch ahead, never more);
//   - Reader.Commit is called only after Sink.Apply returned nil for every
//     message committed (or the message was dead-lettered, or skipped as a
//     tombstone or as wiped by a done truncate);
//   - a transient sink error is retried forever with Backoff (the mapping
//     pauses); a Permanent one is isolated by halving the batch and the
//     changes that fail alone are dead-lettered; ErrSchemaChanged is returned
//     uncommitted for the caller to rebuild the sink;
//   - a truncate marker (PartitionsHeader) holds its partition until every
//     partition reached it; one consumer of the group truncates the store
//     through TruncateBarriers, then the held partitions are read again
//     (Reader.Rewind).
//
// Positions. Every streamed change has a position (commit LSN of its
// transaction, its place in the transaction: Change.CommitLSN, Change.Order;
// transaction.total_order in the envelope), unique and strictly increasing
// in source order, within a transaction too (the rows of one COPY share an
// LSN, so an LSN alone is not a position). A Kafka partition is NOT
// monotonic in positions: a source that restarted publishes again the suffix
// after the slot's confirmed position, and a partly failed write retried as
// a whole can leave [B, A, B]. Hence the invariant of the sinks:
//   - a sink skips only a record it has itself committed (the PostgreSQL sink:
//     its stored Kafka offset per partition, in the same transaction as the
//     rows); it never skips a change because a later position was seen, since
//     that change may never have been applied;
//   - applying the log in order converges: every repeated change is followed,
//     later in its partition, by a repeat of every later change of its key,
//     so the last version applied of each key is the source's last (the
//     PostgreSQL store may show an older version of a repeated row until the
//     repeated suffix is through; Cassandra never does, see below);
//   - changes of one key within one transaction resolve in source order
//     however batches are cut: Cassandra writes each at its commit time plus
//     its place among the transaction's changes of that key
//     (Change.KeyOrder - 1 µs), so neither the tie rule (a delete beats a
//     write) nor a repeat can reorder them.
//
// pipeline imports schema, never a connector.
package pipeline
