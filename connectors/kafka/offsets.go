package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// ErrOffsetOutOfRange is returned for a replay position the topic does not hold.
var ErrOffsetOutOfRange = errors.New("offset out of range")

// Range is the offsets a partition holds: First up to (not including) End.
type Range struct {
	Partition  int
	First, End int64
}

// Admin answers offset questions about topics and consumer groups.
type Admin struct {
	client  *kafkago.Client
	brokers string // as configured, for errors
}

// NewAdmin returns an Admin for the brokers.
func NewAdmin(brokers []string, sec Security) (*Admin, error) {
	t, err := sec.Transport()
	if err != nil {
		return nil, err
	}
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 30 * time.Second}
	if t != nil {
		c.Transport = t
	}
	return &Admin{client: c, brokers: strings.Join(brokers, ",")}, nil
}

// Partitions lists a topic's partitions.
func (a *Admin) Partitions(ctx context.Context, topic string) ([]int, error) {
	md, err := a.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("read metadata of %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return nil, fmt.Errorf("topic %s: %w", topic, t.Error)
			}
			var ps []int
			for _, p := range t.Partitions {
				ps = append(ps, p.ID)
			}
			sort.Ints(ps)
			return ps, nil
		}
	}
	return nil, fmt.Errorf("topic %s does not exist", topic)
}

// Ranges returns the offsets each partition holds.
func (a *Admin) Ranges(ctx context.Context, topic string) ([]Range, error) {
	ps, err := a.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	var reqs []kafkago.OffsetRequest
	for _, p := range ps {
		reqs = append(reqs, kafkago.FirstOffsetOf(p), kafkago.LastOffsetOf(p))
	}
	resp, err := a.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	var out []Range
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		out = append(out, Range{Partition: po.Partition, First: po.FirstOffset, End: po.LastOffset})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out, nil
}

// OffsetsAt returns, per partition, the first offset whose record time is at
// or after t (the partition's end when none is).
func (a *Admin) OffsetsAt(ctx context.Context, topic string, t time.Time) (map[int]int64, error) {
	ranges, err := a.Ranges(ctx, topic)
	if err != nil {
		return nil, err
	}
	var reqs []kafkago.OffsetRequest
	for _, r := range ranges {
		reqs = append(reqs, kafkago.TimeOffsetOf(r.Partition, t))
	}
	resp, err := a.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s at %s: %w", topic, t.Format(time.RFC3339), err)
	}
	out := map[int]int64{}
	for _, r := range ranges {
		out[r.Partition] = r.End
	}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		for off := range po.Offsets {
			if off >= 0 {
				out[po.Partition] = off
			}
		}
	}
	return out, nil
}

// Committed returns a group's committed offsets on a topic (-1: none).
func (a *Admin) Committed(ctx context.Context, group, topic string, partitions []int) (map[int]int64, error) {
	resp, err := a.client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: partitions}})
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("fetch offsets of group %s: %w", group, resp.Error)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("fetch offsets of group %s/%d: %w", group, p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out, nil
}

// Commit positions a group with no members at the given offsets: when
// consumers of the group start, they read from there.
func (a *Admin) Commit(ctx context.Context, group, topic string, offsets map[int]int64) error {
	var commits []kafkago.OffsetCommit
	for p, o := range offsets {
		commits = append(commits, kafkago.OffsetCommit{Partition: p, Offset: o})
	}
	resp, err := a.client.OffsetCommit(ctx, &kafkago.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafkago.OffsetCommit{topic: commits}})
	if err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", group, err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return fmt.Errorf("commit offsets of group %s/%d: %w", group, p.Partition, p.Error)
		}
	}
	return nil
}
