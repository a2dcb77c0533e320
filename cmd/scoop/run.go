package main

import (
	"context"
	"encoding/json"
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
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// daemon is `scoop run`: the source feeding Kafka through the forwarder, one
// consumer per mapping feeding its store, and the admin server. Mappings come
// from the registry; changes are picked up while running.
type daemon struct {
	cfg      *Config
	log      *slog.Logger
	registry *postgres.Registry
	producer *kafka.Producer
	admin    *admin
	items    chan pipeline.Item
	source   atomic.Pointer[postgres.Source]
	acked    atomic.Uint64
	stats    postgres.SourceStats
	budget   *pipeline.Budget
}

// run wires the daemon. The first fatal error cancels everything; SIGTERM
// ends it cleanly.
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
	d := &daemon{cfg: cfg, log: log, registry: postgres.NewRegistry(cfg.SourceURL, cfg.Slot), items: make(chan pipeline.Item, 8192),
		budget: pipeline.NewBudget(int64(cfg.BufferMB) << 20)}
	defer d.registry.Close()
	if cfg.MappingsFile != "" {
		file, err := pipeline.LoadFile(cfg.MappingsFile, cfg.Stores)
		if err != nil {
			return err
		}
		steps, err := d.registry.Apply(ctx, file)
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.MappingsFile, err)
		}
		for _, st := range steps {
			if st.Action != "keep" {
				log.Info("mapping registry", "step", st.String())
			}
		}
	}
	transport, err := cfg.kafkaSecurity().Transport()
	if err != nil {
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
	log.Info("scoop starting", "version", version, "slot", cfg.Slot, "brokers", cfg.KafkaBrokers)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := pipeline.Forward(gctx, pipeline.ForwarderConfig{Budget: d.budget}, d.items, d.producer, d.ack)
		d.admin.ready.Store(false)
		return err
	})
	g.Go(func() error { return d.admin.serve(gctx) })
	g.Go(func() error { return d.supervise(gctx) })
	err = g.Wait()
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

// worker is a running goroutine that can be stopped; done is closed when
// it has returned, and err is then its result.
type worker struct {
	key    string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func start(ctx context.Context, key string, fn func(context.Context) error) *worker {
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{key: key, cancel: cancel, done: make(chan struct{})}
	go func() {
		w.err = fn(wctx)
		close(w.done)
	}()
	return w
}

// stop cancels the worker and waits for it; safe after it has returned.
func (w *worker) stop() {
	w.cancel()
	<-w.done
}

// supervise polls the registry and reconciles the source and the consumers
// with it: a changed set of tables restarts the source (publication synced,
// new tables snapshotted incrementally while streaming), a changed mapping
// restarts its consumer.
func (d *daemon) supervise(ctx context.Context) error {
	var src *worker
	consumers := map[string]*worker{}
	defer func() {
		for _, w := range consumers {
			w.stop()
		}
		if src != nil {
			src.stop()
		}
	}()
	lastVersion := int64(-1)
	backoff := time.Second
	var lastStart time.Time
	next := time.After(0) // reconcile at once, then every second
	for {
		var srcDone <-chan struct{}
		if src != nil {
			srcDone = src.done
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-srcDone:
			err := src.err
			if errors.Is(err, postgres.ErrPrecondition) {
				return err
			}
			d.log.Error("source stopped; restarting", "error", err, "backoff", backoff)
			src = nil
			lastVersion = -1
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		case <-next:
			next = time.After(time.Second)
		}
		version, err := d.registry.Version(ctx)
		if err != nil {
			d.log.Warn("read mapping registry", "error", err)
			continue
		}
		if version == lastVersion && src != nil {
			continue
		}
		mappings, _, err := d.registry.List(ctx)
		if err != nil {
			d.log.Warn("read mapping registry", "error", err)
			continue
		}
		lastVersion = version
		usable := d.usable(mappings)
		// The source: restarted on every registry change (cheap), so table
		// set, publication and requested snapshots follow the registry.
		// It follows every mapping, also those whose store this instance
		// cannot reach: the publication and slot are shared by all
		// instances, and another one may serve them.
		if src != nil {
			src.stop()
		}
		source, err := d.newSource(mappings)
		if err != nil {
			return err
		}
		d.source.Store(source)
		src = start(ctx, "source", func(ctx context.Context) error { return source.Run(ctx, d.items) })
		if time.Since(lastStart) > time.Minute {
			backoff = time.Second // it ran well for a while: start over gently
		}
		lastStart = time.Now()
		// Consumers: one per mapping and generation.
		want := map[string]*postgres.RegisteredMapping{}
		for i := range usable {
			m := &usable[i]
			spec, _ := json.Marshal(m.Mapping)
			want[fmt.Sprintf("%s|%d|%s", m.Name, m.Generation, spec)] = m
		}
		for key, w := range consumers {
			if want[key] == nil {
				w.stop()
				delete(consumers, key)
				d.log.Info("mapping stopped", "mapping", strings.SplitN(key, "|", 2)[0])
			}
		}
		for key, m := range want {
			if consumers[key] == nil {
				stats := d.admin.mappingStats(m.Name)
				consumers[key] = start(ctx, key, func(ctx context.Context) error { return runMapping(ctx, d.cfg, m, d.producer, stats, d.log) })
				d.log.Info("mapping started", "mapping", m.Name, "generation", m.Generation, "source", m.Source, "store", m.Store)
			}
		}
		d.admin.setMappings(usable)
		d.admin.ready.Store(true)
	}
}

// usable drops (loudly) mappings whose store has no URL in this instance's
// environment: they get no consumer here (their table stays in the source);
// the others keep running.
func (d *daemon) usable(all []postgres.RegisteredMapping) []postgres.RegisteredMapping {
	var out []postgres.RegisteredMapping
	for _, m := range all {
		kind := storeKind(d.cfg.Stores[strings.ToLower(m.Store)])
		if sinkFactories[kind] == nil {
			d.log.Error("mapping skipped: its store has no usable URL in this instance", "mapping", m.Name, "store", m.Store, "fix", "set "+pipeline.StoreEnvVar(m.Store))
			continue
		}
		out = append(out, m)
	}
	return out
}

func (d *daemon) newSource(mappings []postgres.RegisteredMapping) (*postgres.Source, error) {
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
		Encoding:          schema.EncoderConfig{Name: d.cfg.TopicPrefix, Version: version, Schemas: d.cfg.EventSchemas},
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
