package kafka

import (
	"errors"
	"fmt"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/scoop-cdc/scoop/pipeline"
)

// A truncate marker becomes one copy per partition at its place; the
// balancer sends each copy to its partition and keyed records by Murmur2,
// so every partition sees the records before the marker, then the marker,
// then the records after it.
func TestMessagesExpandTruncateMarker(t *testing.T) {
	recs := []pipeline.Record{
		{Topic: "t", Key: []byte(`{"id":1}`), Value: []byte("before-1")},
		{Topic: "t", Key: []byte(`{"id":2}`), Value: []byte("before-2")},
		{Topic: "t", Value: []byte("truncate"), AllPartitions: true, Headers: map[string]string{"h": "v"}},
		{Topic: "t", Key: []byte(`{"id":3}`), Value: []byte("after-3")},
		{Topic: "t", Key: []byte(`{"id":1}`), Value: []byte("after-1")},
		{Topic: "u", Key: []byte(`{"id":9}`), Value: []byte("other topic")},
	}
	msgs, err := messages(recs, func(topic string) (int, error) { return 3, nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(recs)-1+3 {
		t.Fatalf("got %d messages, want %d", len(msgs), len(recs)+2)
	}
	// Route as the Writer does (in order, per partition).
	var b markerBalancer
	perPartition := map[string][]string{}
	for _, m := range msgs {
		p := b.Balance(m, 0, 1, 2)
		k := fmt.Sprintf("%s/%d", m.Topic, p)
		perPartition[k] = append(perPartition[k], string(m.Value))
	}
	keyed := func(key string) int {
		var mb kafkago.Murmur2Balancer
		return mb.Balance(kafkago.Message{Key: []byte(key)}, 0, 1, 2)
	}
	for p := 0; p < 3; p++ {
		var want []string
		for _, r := range recs[:2] {
			if keyed(string(r.Key)) == p {
				want = append(want, string(r.Value))
			}
		}
		want = append(want, "truncate")
		for _, r := range recs[3:5] {
			if keyed(string(r.Key)) == p {
				want = append(want, string(r.Value))
			}
		}
		if got := perPartition[fmt.Sprintf("t/%d", p)]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("partition %d: got %q, want %q", p, got, want)
		}
	}
	for i, m := range msgs[2:5] {
		if m.Partition != i || markerPartitions(m) != 3 {
			t.Errorf("copy %d: partition %d, header count %d", i, m.Partition, markerPartitions(m))
		}
		if len(m.Headers) != 2 || m.Headers[0].Key != "h" {
			t.Errorf("copy %d: headers %v, want the record's and %s", i, m.Headers, pipeline.PartitionsHeader)
		}
	}
	if markerPartitions(msgs[0]) != 0 {
		t.Errorf("a keyed record is taken for a marker")
	}
}

func TestMessagesPartitionCountError(t *testing.T) {
	recs := []pipeline.Record{{Topic: "t", Value: []byte("truncate"), AllPartitions: true}}
	_, err := messages(recs, func(topic string) (int, error) {
		return 0, errors.New("read partitions of t for a truncate marker: boom")
	})
	if err == nil || err.Error() != "read partitions of t for a truncate marker: boom" {
		t.Fatalf("got %v", err)
	}
}

func TestMarkerPartitionsBadHeader(t *testing.T) {
	for _, v := range []string{"", "x", "0", "-2"} {
		m := kafkago.Message{Headers: []kafkago.Header{{Key: pipeline.PartitionsHeader, Value: []byte(v)}}}
		if n := markerPartitions(m); n != 0 {
			t.Errorf("header %q: got %d partitions, want 0 (not a marker)", v, n)
		}
	}
}
