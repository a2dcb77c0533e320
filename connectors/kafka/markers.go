package kafka

import (
	"context"
	"fmt"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/scoop-cdc/scoop/pipeline"
)

// messages turns records into Kafka messages in order. A record flagged
// AllPartitions becomes one copy per partition of its topic (0..n-1, in
// that order, at the record's place), each addressed in Message.Partition
// and carrying pipeline.PartitionsHeader = n; markerBalancer routes them.
func messages(records []pipeline.Record, partitions func(topic string) (int, error)) ([]kafkago.Message, error) {
	msgs := make([]kafkago.Message, 0, len(records))
	for i := range records {
		r := &records[i]
		m := kafkago.Message{Topic: r.Topic, Key: r.Key, Value: r.Value, Time: r.Time}
		for k, v := range r.Headers {
			m.Headers = append(m.Headers, kafkago.Header{Key: k, Value: []byte(v)})
		}
		if !r.AllPartitions {
			msgs = append(msgs, m)
			continue
		}
		n, err := partitions(r.Topic)
		if err != nil {
			return nil, err
		}
		count := []byte(strconv.Itoa(n))
		for part := 0; part < n; part++ {
			c := m
			c.Partition = part
			c.Headers = append(append([]kafkago.Header(nil), m.Headers...), kafkago.Header{Key: pipeline.PartitionsHeader, Value: count})
			msgs = append(msgs, c)
		}
	}
	return msgs, nil
}

// markerPartitions returns the partition count written in a truncate
// marker's header (0: the message is not a marker).
func markerPartitions(m kafkago.Message) int {
	for _, h := range m.Headers {
		if h.Key == pipeline.PartitionsHeader {
			n, err := strconv.Atoi(string(h.Value))
			if err != nil || n < 1 {
				return 0
			}
			return n
		}
	}
	return 0
}

// markerBalancer places messages by key with Murmur2 (the Java client's
// partitioner), except truncate markers: kafka-go's Writer ignores
// Message.Partition and asks the balancer, which gets the message, so a
// marker (recognised by its pipeline.PartitionsHeader) goes to the
// partition written in its Partition field by messages.
type markerBalancer struct {
	keyed kafkago.Murmur2Balancer
}

func (b *markerBalancer) Balance(m kafkago.Message, partitions ...int) int {
	if markerPartitions(m) > 0 {
		return m.Partition
	}
	return b.keyed.Balance(m, partitions...)
}

// partitionCountTTL bounds how long a topic's partition count is trusted:
// partitions added to a topic get markers after at most this long.
const partitionCountTTL = time.Minute

type cachedCount struct {
	n  int
	at time.Time
}

// partitionCount is the number of partitions of a topic, from the
// metadata, cached for partitionCountTTL (a marker carries the count it
// was written with in its header, so consumers agree with the producer).
func (p *Producer) partitionCount(ctx context.Context, topic string) (int, error) {
	p.mu.Lock()
	c, ok := p.parts[topic]
	p.mu.Unlock()
	if ok && time.Since(c.at) < partitionCountTTL {
		return c.n, nil
	}
	md, err := p.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("read partitions of %s for a truncate marker: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return 0, fmt.Errorf("read partitions of %s for a truncate marker: %w", topic, t.Error)
		}
		if len(t.Partitions) == 0 {
			break
		}
		p.mu.Lock()
		p.parts[topic] = cachedCount{n: len(t.Partitions), at: time.Now()}
		p.mu.Unlock()
		return len(t.Partitions), nil
	}
	return 0, fmt.Errorf("read partitions of %s for a truncate marker: topic has no partitions in the metadata", topic)
}
