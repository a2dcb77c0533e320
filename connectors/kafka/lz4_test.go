package kafka

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
)

// kafka-go's lz4 codec writes frames of 64 KB blocks without a content
// checksum (as Kafka's own producer does; pierrec/lz4's defaults are 4 MB
// and a checksum) that read back as they were written.
func TestLZ4Frames(t *testing.T) {
	var data bytes.Buffer
	for i := 0; data.Len() < 300<<10; i++ {
		fmt.Fprintf(&data, `{"schema":{"type":"struct","name":"p.public.t.Envelope"},"payload":{"after":{"id":%d}}}`, i)
	}
	codec := compress.Lz4.Codec()
	var frame bytes.Buffer
	w := codec.NewWriter(&frame)
	if _, err := w.Write(data.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Magic number, FLG, then BD: the block maximum size in bits 4-6 (4 is
	// 64 KB, 7 is 4 MB).
	b := frame.Bytes()
	if len(b) < 6 || !bytes.Equal(b[:4], []byte{0x04, 0x22, 0x4d, 0x18}) {
		t.Fatalf("not an LZ4 frame: % x", b[:min(len(b), 8)])
	}
	if size := b[5] >> 4 & 7; size != 4 {
		t.Fatalf("block size index %d, want 4 (64 KB)", size)
	}
	if b[4]&0x04 != 0 {
		t.Fatalf("FLG %08b: a content checksum", b[4])
	}
	r := codec.NewReader(bytes.NewReader(b))
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data.Bytes()) {
		t.Fatalf("read back %d bytes of %d: %v", len(got), data.Len(), err)
	}
}

// Records larger than a block, in batches of many blocks, go through Kafka
// and come back byte for byte.
func TestLZ4ThroughKafka(t *testing.T) {
	testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := []string{testenv.Broker()}
	topic := testenv.Name("lz4")
	p, err := NewProducer(Config{Brokers: brokers, Partitions: 1, MaxMessageBytes: 1 << 20, DLQTopic: topic + ".dlq"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	t.Cleanup(func() {
		c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: &kafkago.Transport{}}
		c.DeleteTopics(context.Background(), &kafkago.DeleteTopicsRequest{Topics: []string{topic, topic + ".dlq"}})
	})
	if err := p.EnsureTopics(ctx, topic); err != nil {
		t.Fatal(err)
	}
	var records []pipeline.Record
	for i := range 400 {
		value := bytes.Repeat(fmt.Appendf(nil, `{"n":%d,"pad":"%070d"}`, i, i), 1+i%200) // up to 18 KB
		records = append(records, pipeline.Record{Topic: topic, Key: fmt.Appendf(nil, `{"id":%d}`, i), Value: value})
	}
	if err := p.Publish(ctx, records); err != nil {
		t.Fatal(err)
	}
	r := NewReader(ConsumerConfig{Brokers: brokers, GroupID: topic, Topic: topic, Mapping: &pipeline.Mapping{Name: "lz4"}})
	defer r.Close()
	n := 0
	for n < len(records) {
		msgs, err := r.Fetch(ctx)
		if err != nil {
			t.Fatalf("after %d of %d records: %v", n, len(records), err)
		}
		for _, m := range msgs {
			if want := records[m.Offset]; !bytes.Equal(m.Key, want.Key) || !bytes.Equal(m.Value, want.Value) {
				t.Fatalf("offset %d: %d bytes, want %d", m.Offset, len(m.Value), len(want.Value))
			}
			n++
		}
	}
}
