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
// pipeline imports schema, never a connector.
package pipeline
