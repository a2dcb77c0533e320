package main

import (
	"context"
	"errors"

	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/scoop-cdc/scoop/connectors/cassandra"
	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/pipeline"
)

// sinkFactories is the visible map from store kind to constructor.
var sinkFactories = map[string]func(ctx context.Context, storeURL string, m *postgres.RegisteredMapping, group, topic string, target pipeline.Target, log *slog.Logger) (pipeline.Sink, error){
	"postgres": func(ctx context.Context, storeURL string, m *postgres.RegisteredMapping, group, topic string, target pipeline.Target, log *slog.Logger) (pipeline.Sink, error) {
		return postgres.NewSink(ctx, postgres.SinkConfig{URL: storeURL, Mapping: m.Name, Group: group, Topic: topic, Target: target, Logger: log, Method: envOr("SCOOP_PG_SINK_METHOD", postgres.MethodCopy)})
	},
	"cassandra": func(ctx context.Context, storeURL string, m *postgres.RegisteredMapping, group, topic string, target pipeline.Target, log *slog.Logger) (pipeline.Sink, error) {
		inFlight, _ := strconv.Atoi(envOr("SCOOP_CASSANDRA_MAX_IN_FLIGHT", "128"))
		return cassandra.NewSink(ctx, cassandra.SinkConfig{URL: storeURL, Mapping: m.Name, Target: target, Logger: log, MaxInFlight: inFlight,
			TLS: envOr("SCOOP_CASSANDRA_TLS", "") == "true", CAFile: envOr("SCOOP_CASSANDRA_CA_FILE", ""),
			Username: envOr("SCOOP_CASSANDRA_USERNAME", ""), Password: envOr("SCOOP_CASSANDRA_PASSWORD", "")})
	},
}

func storeKind(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.Scheme == "postgresql" {
		return "postgres"
	}
	return u.Scheme
}

// runMapping consumes one mapping's topic into its store until ctx ends. A
// store that is down (at start or later) pauses the mapping and is retried
// with backoff; other mappings keep flowing.
func runMapping(ctx context.Context, cfg *Config, m *postgres.RegisteredMapping, dlq *kafka.Producer, stats *kafka.ConsumerStats, log *slog.Logger) error {
	log = log.With("mapping", m.Name, "store", m.Store)
	schemaName, table := m.SourceTable()
	storeURL := cfg.Stores[strings.ToLower(m.Store)]
	group := m.GroupID(cfg.TopicPrefix)
	factory := sinkFactories[storeKind(storeURL)]
	topic := m.TopicName(cfg.TopicPrefix)
	backoff := time.Second
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
			store, err := factory(ctx, storeURL, m, group, topic, target, log)
			if err != nil {
				return err
			}
			sink := &schemaWatch{Sink: store, target: target, ignore: ignore, describe: describe}
			defer func() {
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				sink.Close(cctx)
			}()
			backoff = time.Second
			stats.Paused.Store(false)
			stats.SchemaMismatch.Store(false)
			stats.LastError.Store(nil)
			dialer, err := cfg.kafkaSecurity().Dialer()
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
			return kafka.Consume(ctx, kafka.ConsumerConfig{
				Dialer: dialer, Barriers: barriers,
				Brokers: cfg.KafkaBrokers, GroupID: group, Topic: topic, Mapping: &m.Mapping,
				DeadLetters: dlq, DLQTopic: cfg.TopicPrefix + ".dlq", Logger: log, MaxBatch: cfg.SinkBatch, MaxBatchBytes: cfg.SinkBatchMB << 20,
			}, sink, stats)
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
		stats.SchemaMismatch.Store(errors.Is(err, pipeline.ErrSchemaMismatch))
		stats.Paused.Store(true)
		log.Error("mapping paused; retrying", "error", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	return nil
}

func envOr(name, def string) string {
	if v := lookupEnv(name); v != "" {
		return v
	}
	return def
}

func lookupEnv(name string) string { return os.Getenv(name) }
