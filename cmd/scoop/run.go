package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// run wires the daemon: source -> forwarder -> Kafka, plus the admin server.
// The first fatal error cancels everything; SIGTERM ends it cleanly.
func run(ctx context.Context) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if err := cfg.requireRun(); err != nil {
		return err
	}
	log := cfg.logger()
	slog.SetDefault(log)
	mappings, err := pipeline.LoadFile(cfg.MappingsFile, cfg.Stores)
	if err != nil {
		return err
	}
	var tables []postgres.TableName
	for _, t := range mappings.SourceTables() {
		tables = append(tables, postgres.TableName{Schema: t[0], Name: t[1]})
	}
	topics := map[postgres.TableName]string{}
	for i := range mappings.Mappings {
		m := &mappings.Mappings[i]
		s, t := m.SourceTable()
		topics[postgres.TableName{Schema: s, Name: t}] = m.TopicName(cfg.TopicPrefix)
	}
	producer, err := kafka.NewProducer(kafka.Config{
		Brokers:           cfg.KafkaBrokers,
		Partitions:        cfg.TopicPartitions,
		ReplicationFactor: cfg.TopicReplication,
		MaxMessageBytes:   cfg.KafkaMaxMessage,
		DLQTopic:          cfg.TopicPrefix + ".dlq",
	})
	if err != nil {
		return err
	}
	source, err := postgres.NewSource(postgres.SourceConfig{
		URL:         cfg.SourceURL,
		Slot:        cfg.Slot,
		Publication: cfg.Publication,
		Tables:      tables,
		Topic: func(s, t string) string {
			if topic, ok := topics[postgres.TableName{Schema: s, Name: t}]; ok {
				return topic
			}
			return pipeline.TopicFor(cfg.TopicPrefix, s, t)
		},
		Encoding:          schema.EncoderConfig{Name: cfg.TopicPrefix, Version: version, Schemas: cfg.EventSchemas},
		HeartbeatInterval: cfg.HeartbeatInterval,
		SnapshotWorkers:   cfg.SnapshotWorkers,
		SnapshotChunkRows: cfg.SnapshotChunkRows,
		Logger:            log,
	})
	if err != nil {
		return err
	}
	for i := range mappings.Mappings {
		m := &mappings.Mappings[i]
		if storeKind(cfg.Stores[m.Store]) == "" || sinkFactories[storeKind(cfg.Stores[m.Store])] == nil {
			return fmt.Errorf("mapping %s: store %q has no usable URL (set %s)", m.Name, m.Store, pipeline.StoreEnvVar(m.Store))
		}
	}
	log.Info("scoop starting", "version", version, "mappings", len(mappings.Mappings), "tables", len(tables), "brokers", cfg.KafkaBrokers)

	admin, err := newAdmin(cfg, source)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	items := make(chan pipeline.Item, 8192)
	g.Go(func() error { return source.Run(gctx, items) })
	g.Go(func() error {
		err := pipeline.Forward(gctx, pipeline.ForwarderConfig{}, items, producer, source.Ack)
		admin.ready.Store(false)
		return err
	})
	stats := make([]*kafka.ConsumerStats, len(mappings.Mappings))
	for i := range mappings.Mappings {
		stats[i] = admin.mappingStats(mappings.Mappings[i].Name)
	}
	g.Go(func() error { return admin.serve(gctx) })
	for i := range mappings.Mappings {
		m := &mappings.Mappings[i]
		g.Go(func() error { return runMapping(gctx, cfg, m, producer, stats[i], log) })
	}
	admin.ready.Store(true)
	err = g.Wait()
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cerr := producer.Close(closeCtx); cerr != nil {
		log.Warn("closing Kafka producer", "error", cerr)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		log.Info("scoop stopped")
		return nil
	}
	return err
}

// listen opens the admin address early so a port conflict fails at start.
func listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin server on SCOOP_ADMIN_ADDR=%s: %w", addr, err)
	}
	return l, nil
}

func serveHTTP(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return ctx.Err()
	case err := <-errc:
		return fmt.Errorf("admin server: %w", err)
	}
}
