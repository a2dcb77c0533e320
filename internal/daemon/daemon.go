package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/registry"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// daemon is `scoop run`: the source feeding Kafka through the forwarder, one
// consumer per mapping feeding its store, and the admin server. Mappings come
// from the registry; changes are picked up while running.
type daemon struct {
	cfg      *Config
	version  string
	log      *slog.Logger
	registry registry.Store
	producer *kafka.Producer
	admin    *admin
	items    chan pipeline.Item
	source   atomic.Pointer[postgres.Source]
	acked    atomic.Uint64
	stats    postgres.SourceStats
	budget   *pipeline.Budget
	// lease: this instance leads the slot's source (forward flow only).
	lease *postgres.Lease
}

// Run is `scoop run`: it wires the daemon from validated settings and runs
// it until ctx ends (SIGTERM) or a fatal error, which cancels everything.
func Run(ctx context.Context, cfg *Config, version string) error {
	if err := cfg.RequireRun(); err != nil {
		return err
	}
	log := cfg.Logger()
	slog.SetDefault(log)
	for _, w := range cfg.Warnings() {
		log.Warn(w.Message, "setting", w.Setting, "risk", w.Risk)
	}
	d := &daemon{cfg: cfg, version: version, log: log, registry: postgres.NewRegistry(cfg.SourceURL, cfg.Slot), items: make(chan pipeline.Item, 8192),
		budget: pipeline.NewBudget(int64(cfg.BufferMB) << 20)}
	defer d.registry.Close()
	if cfg.MappingsFile != "" {
		file, err := pipeline.LoadFile(cfg.MappingsFile, cfg.Stores)
		if err != nil {
			return err
		}
		if err := pipeline.CheckTopics(cfg.TopicPrefix, file.Mappings); err != nil {
			return fmt.Errorf("%s: %w", cfg.MappingsFile, err)
		}
		// Only a file the registry already follows (or a registry no file
		// set yet): see registry.FileState.Allows.
		steps, err := d.registry.ApplyAtStart(ctx, file)
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.MappingsFile, err)
		}
		for _, st := range steps {
			if st.Action != "keep" {
				log.Info("mapping registry", "step", st.String())
			}
		}
	}
	transport, err := cfg.KafkaSecurity().Transport()
	if err != nil {
		return err
	}
	// A wrong CA, password or mechanism stops scoop at once, naming the
	// setting, instead of failing every retry the same way.
	if err := kafka.CheckSecurity(ctx, cfg.KafkaBrokers, cfg.KafkaSecurity()); err != nil {
		return err
	}
	if d.producer, err = kafka.NewProducer(kafka.Config{
		Transport:         transport,
		Brokers:           cfg.KafkaBrokers,
		Partitions:        cfg.TopicPartitions,
		ReplicationFactor: cfg.TopicReplication,
		MaxMessageBytes:   cfg.KafkaMaxMessage,
		DLQTopic:          cfg.TopicPrefix + ".dlq",
	}); err != nil {
		return err
	}
	if d.admin, err = newAdmin(cfg, &d.stats, d.acked.Load); err != nil {
		return err
	}
	log.Info("scoop starting", "version", d.version, "slot", cfg.Slot, "brokers", cfg.KafkaBrokers)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := pipeline.Forward(gctx, pipeline.ForwarderConfig{Budget: d.budget}, d.items, d.producer, d.ack)
		d.admin.ready.Store(false)
		return err
	})
	g.Go(func() error { return d.admin.serve(gctx) })
	g.Go(func() error { return d.admin.mon.run(gctx) })
	g.Go(func() error { return d.supervise(gctx) })
	if cfg.HeartbeatRecords {
		g.Go(func() error { return d.publishHeartbeats(gctx) })
	}
	err = g.Wait()
	if d.lease != nil {
		d.lease.Release()
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cerr := d.producer.Close(closeCtx); cerr != nil {
		log.Warn("closing Kafka producer", "error", cerr)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		log.Info("scoop stopped")
		return nil
	}
	return err
}

func (d *daemon) ack(lsn uint64) {
	for {
		cur := d.acked.Load()
		if lsn <= cur || d.acked.CompareAndSwap(cur, lsn) {
			break
		}
	}
	if s := d.source.Load(); s != nil {
		s.Ack(lsn)
	}
}

// usable drops (loudly) mappings whose store has no URL in this instance's
// environment: they get no consumer here (their table stays in the source);
// the others keep running.
func (d *daemon) usable(all []registry.Mapping) []registry.Mapping {
	var out []registry.Mapping
	for _, m := range all {
		kind := storeKind(d.cfg.Stores[strings.ToLower(m.Store)])
		if _, ok := storeKinds[kind]; !ok {
			d.log.Error("mapping skipped: its store has no usable URL in this instance", "mapping", m.Name, "store", m.Store, "fix", "set "+pipeline.StoreEnvVar(m.Store))
			continue
		}
		out = append(out, m)
	}
	return out
}

func (d *daemon) newSource(mappings []registry.Mapping) (*postgres.Source, error) {
	specs := make([]pipeline.Mapping, len(mappings))
	for i := range mappings {
		specs[i] = mappings[i].Mapping
	}
	// Applies check this too; a registry written under another prefix may
	// still collide.
	if err := pipeline.CheckTopics(d.cfg.TopicPrefix, specs); err != nil {
		return nil, fmt.Errorf("mapping registry: %w", err)
	}
	topics := map[postgres.TableName]string{}
	var tables []postgres.TableName
	for i := range mappings {
		m := &mappings[i]
		s, t := m.SourceTable()
		tn := postgres.TableName{Schema: s, Name: t}
		if _, seen := topics[tn]; !seen {
			tables = append(tables, tn)
		}
		topics[tn] = m.TopicName(d.cfg.TopicPrefix)
	}
	sort.Slice(tables, func(i, j int) bool { return tables[i].String() < tables[j].String() })
	return postgres.NewSource(postgres.SourceConfig{
		URL:         d.cfg.SourceURL,
		Slot:        d.cfg.Slot,
		Publication: d.cfg.Publication,
		Tables:      tables,
		Topic: func(s, t string) string {
			if topic, ok := topics[postgres.TableName{Schema: s, Name: t}]; ok {
				return topic
			}
			return pipeline.TopicFor(d.cfg.TopicPrefix, s, t)
		},
		Encoding:          schema.EncoderConfig{Name: d.cfg.TopicPrefix, Version: d.version, Schemas: d.cfg.EventSchemas},
		HeartbeatInterval: d.cfg.HeartbeatInterval,
		SnapshotWorkers:   d.cfg.SnapshotWorkers,
		SnapshotChunkRows: d.cfg.SnapshotChunkRows,
		Logger:            d.log,
		Stats:             &d.stats,
		Budget:            d.budget,
	})
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
