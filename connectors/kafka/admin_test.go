package kafka

import (
	"context"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/scoop-cdc/scoop/internal/testenv"
)

// A topic created a moment ago is known to a new Admin even when one made
// earlier in the same process (a CLI command run in-process, a test) read
// the cluster's metadata before it existed: each Admin has a transport of
// its own, not kafka-go's shared one with its 6 s metadata cache.
func TestAdminSeesANewTopic(t *testing.T) {
	testenv.Require(t)
	ctx := context.Background()
	brokers := []string{testenv.Broker()}
	topic := testenv.Name("fresh")
	before, err := NewAdmin(brokers, Security{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := before.Partitions(ctx, topic); err == nil {
		t.Fatalf("topic %s exists before it was created", topic)
	}
	// Created by another client, as the daemon (another process) does: a
	// transport that creates a topic refreshes its own metadata.
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: &kafkago.Transport{}}
	res, err := c.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}}})
	if err != nil || res.Errors[topic] != nil {
		t.Fatalf("create %s: %v %v", topic, err, res.Errors[topic])
	}
	t.Cleanup(func() { c.DeleteTopics(context.Background(), &kafkago.DeleteTopicsRequest{Topics: []string{topic}}) })
	after, err := NewAdmin(brokers, Security{})
	if err != nil {
		t.Fatal(err)
	}
	parts, err := after.Partitions(ctx, topic)
	if err != nil || len(parts) != 3 {
		t.Fatalf("a new admin right after the topic was created: %v %v", parts, err)
	}
}
