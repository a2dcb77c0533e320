// Package kafka is scoop's Kafka connector (kafka-go): the Producer that
// publishes change records with acks=all and creates topics, and the
// Reader, one member of a mapping's consumer group read in batches with
// explicit commits, which pipeline.Apply feeds into a sink (Consume wires
// the two).
//
// Contract: Producer.Publish returns nil only when every record was
// acknowledged by all in-sync replicas; records of one key keep their order
// (one partition per key, Java-compatible murmur2 partitioning). A record
// larger than MaxMessageBytes is not dropped: it is replaced by a dead-letter
// record in <prefix>.dlq that carries the reason and the key.
package kafka
