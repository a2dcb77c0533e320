package daemon

import (
	"context"
	"time"

	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// publishHeartbeats writes a heartbeat record, as Debezium writes them (see
// schema.Encoder.Heartbeat), to schema.HeartbeatTopic each time a heartbeat
// of the source came back through the slot: a record says the stream is
// flowing, as Debezium's say its connector is, and stops when it stops.
// The record carries the heartbeat's time on the monolith. A record Kafka
// refuses is reported; the next heartbeat's record replaces it.
func (d *daemon) publishHeartbeats(ctx context.Context) error {
	enc := schema.NewEncoder(schema.EncoderConfig{Name: d.cfg.TopicPrefix, Schemas: d.cfg.EventSchemas}, nil)
	topic := schema.HeartbeatTopic(d.cfg.TopicPrefix)
	tick := time.NewTicker(max(d.cfg.HeartbeatInterval/2, 100*time.Millisecond))
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		ms := d.stats.LastHeartbeat.Load()
		if ms == 0 || ms == last {
			continue
		}
		at := time.UnixMilli(ms)
		key, value := enc.Heartbeat(at)
		if err := d.producer.Publish(ctx, []pipeline.Record{{Topic: topic, Key: key, Value: value, Time: at}}); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.log.Error("heartbeat record not published; the next heartbeat's record replaces it", "topic", topic, "error", err)
			continue
		}
		last = ms
	}
}
