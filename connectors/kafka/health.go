package kafka

import (
	"context"
	"errors"
	"fmt"

	kafkago "github.com/segmentio/kafka-go"
)

// ErrNoTopic is returned by Lag for a topic that does not exist yet.
var ErrNoTopic = errors.New("topic does not exist yet")

// Ping asks a broker of the cluster for its API versions: nil when Kafka
// answers. (Not a metadata request: kafka-go answers those from its cache,
// which outlives the brokers.)
func (a *Admin) Ping(ctx context.Context) error {
	resp, err := a.client.ApiVersions(ctx, &kafkago.ApiVersionsRequest{})
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if err != nil {
		return fmt.Errorf("ask Kafka (%s) for its API versions: %w", a.brokers, err)
	}
	return nil
}

// Lag is how many messages of topic the group has not committed yet,
// summed over the partitions (a partition the group never committed counts
// from its first offset).
func (a *Admin) Lag(ctx context.Context, group, topic string) (int64, error) {
	md, err := a.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("read metadata of %s: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) == 0 {
		return 0, fmt.Errorf("lag of group %s on %s: %w", group, topic, ErrNoTopic)
	}
	ranges, err := a.Ranges(ctx, topic)
	if err != nil {
		return 0, err
	}
	var ps []int
	for _, r := range ranges {
		ps = append(ps, r.Partition)
	}
	committed, err := a.Committed(ctx, group, topic, ps)
	if err != nil {
		return 0, err
	}
	var lag int64
	for _, r := range ranges {
		from := r.First
		if c, ok := committed[r.Partition]; ok && c > from {
			from = c
		}
		if r.End > from {
			lag += r.End - from
		}
	}
	return lag, nil
}
