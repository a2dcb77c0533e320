package daemon

import (
	"context"
	"errors"

	"log/slog"
	"strings"
	"time"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/registry"
	"github.com/scoop-cdc/scoop/pipeline"
)

// runMapping consumes one mapping's topic into its store until ctx ends. A
// store that is down (at start or later) pauses the mapping and is retried
// with backoff; other mappings keep flowing.
func runMapping(ctx context.Context, cfg *Config, m *registry.Mapping, dlq *kafka.Producer, stats *kafka.ConsumerStats, sm *sinkMetrics, log *slog.Logger) error {
	log = log.With("mapping", m.Name, "store", m.Store)
	schemaName, table := m.SourceTable()
	storeURL := cfg.Stores[strings.ToLower(m.Store)]
	group := m.GroupID(cfg.TopicPrefix)
	kind := storeKinds[storeKind(storeURL)]
	topic := m.TopicName(cfg.TopicPrefix)
	backoff := pipeline.Backoff{Min: time.Second, Max: 30 * time.Second}
	ignore := map[string]bool{} // event columns the source no longer has
	var lastErr error
	for ctx.Err() == nil {
		err := func() error {
			// The consumer group needs the topic to exist before it joins.
			if err := dlq.EnsureTopics(ctx, topic, cfg.TopicPrefix+".dlq"); err != nil {
				return err
			}
			describe := func(ctx context.Context) (pipeline.Target, error) {
				cols, err := postgres.DescribeColumns(ctx, cfg.SourceURL, postgres.TableName{Schema: schemaName, Name: table})
				if err != nil {
					return pipeline.Target{}, err
				}
				live := liveMapping(m.Mapping, cols, log)
				return live.ShapeTarget(cols)
			}
			target, err := describe(ctx)
			if err != nil {
				return err
			}
			ignoredColumns(ignore, lastErr, target, log)
			// The sink's table is created or brought to the source's columns
			// here (columns added; see docs/sinks.md).
			both := m.Direction == pipeline.DirectionBoth
			store, err := kind.open(ctx, cfg, sinkSpec{url: storeURL, mapping: m.Name, group: group, topic: topic, target: target, log: log, both: both, policy: m.Conflict})
			if err != nil {
				return err
			}
			sink := &schemaWatch{Sink: store, target: target, ignore: ignore, describe: describe}
			defer func() {
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				sink.Close(cctx)
			}()
			backoff.Reset()
			stats.Paused.Store(false)
			stats.SchemaMismatch.Store(false)
			stats.LastError.Store(nil)
			dialer, err := cfg.KafkaSecurity().Dialer()
			if err != nil {
				return err
			}
			// Truncate barriers live in the monolith, which every instance
			// consuming the group reaches.
			barriers, err := postgres.NewTruncateBarriers(ctx, cfg.SourceURL)
			if err != nil {
				return err
			}
			defer barriers.Close()
			skip := ""
			if both {
				skip = pipeline.ReverseOrigin(&m.Mapping)
			}
			return kafka.Consume(ctx, kafka.ConsumerConfig{
				Dialer: dialer, Barriers: barriers, SkipOrigin: skip,
				Brokers: cfg.KafkaBrokers, GroupID: group, Topic: topic, Mapping: &m.Mapping,
				DeadLetters: dlq, DLQTopic: cfg.TopicPrefix + ".dlq", Logger: log, MaxBatch: cfg.SinkBatch, MaxBatchBytes: cfg.SinkBatchMB << 20,
			}, measured{Sink: sink, m: sm}, stats)
		}()
		if ctx.Err() != nil {
			return nil
		}
		prev := lastErr
		lastErr = err
		if errors.Is(err, pipeline.ErrSchemaChanged) && !sameSchemaChange(err, prev) {
			// Rebuild the sink from the source's current columns at once.
			stats.SchemaChanges.Add(1)
			log.Info("source columns changed; rebuilding the sink", "reason", err)
			continue
		}
		msg := err.Error()
		stats.LastError.Store(&msg)
		mismatch := errors.Is(err, pipeline.ErrSchemaMismatch)
		if mismatch && !stats.SchemaMismatch.Load() {
			sm.schemaMismatch.Add(1)
		}
		stats.SchemaMismatch.Store(mismatch)
		stats.Paused.Store(true)
		wait := backoff.Next()
		log.Error("mapping paused; retrying", "error", err, "backoff", wait)
		if pipeline.Sleep(ctx, wait) != nil {
			return nil
		}
	}
	return nil
}
