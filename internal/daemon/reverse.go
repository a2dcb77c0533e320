package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/scoop-cdc/scoop/connectors/cassandra"
	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/registry"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// The reverse flows of the mappings with direction: both (docs/reverse.md):
//   - per PostgreSQL store, a reverse source: the service tables of those
//     mappings, captured by logical replication in the service database
//     (slot <SCOOP_SLOT>_rev_<store>, publication <SCOOP_PUBLICATION>_rev_<store>)
//     into each mapping's reverse topic, without what scoop's forward sink
//     wrote there (its replication origin), under a lease like the forward
//     source's;
//   - per mapping, a reverse sink: the reverse topic into the monolith
//     table, under the conflict policy, marked with the mapping's reverse
//     origin so that the forward source tags those changes and this
//     mapping's forward sink skips them. For a Cassandra store, whose
//     service publishes its writes itself (connectors/cassandra/servicewriter),
//     the same events are also written into the Cassandra table.

func (d *daemon) reverseFlows(version int64, usable []registry.Mapping) []flow {
	byStore := map[string][]registry.Mapping{}
	var out []flow
	for _, m := range usable {
		if m.Direction != pipeline.DirectionBoth {
			continue
		}
		store := strings.ToLower(m.Store)
		if storeKind(d.cfg.Stores[store]) == "postgres" {
			byStore[store] = append(byStore[store], m)
		}
		spec, _ := json.Marshal(m.Mapping)
		stats := d.admin.mappingStats(m.Name + ":reverse")
		out = append(out, flow{
			key:  fmt.Sprintf("reverse|%s|%d|%s", m.Name, m.Generation, spec),
			name: "reverse mapping " + m.Name,
			run: func(ctx context.Context) error {
				return d.runReverse(ctx, &m, stats)
			},
		})
	}
	stores := make([]string, 0, len(byStore))
	for s := range byStore {
		stores = append(stores, s)
	}
	sort.Strings(stores)
	// A PostgreSQL store left without a mapping in direction both gets its
	// reverse slot and publication dropped.
	var retired []string
	for name, raw := range d.cfg.Stores {
		if _, ok := byStore[name]; !ok && storeKind(raw) == "postgres" {
			retired = append(retired, name)
		}
	}
	sort.Strings(retired)
	for _, store := range retired {
		out = append(out, flow{
			key:  fmt.Sprintf("reverse-retire|%s|%d", store, version),
			name: "reverse retirement " + store,
			run: func(ctx context.Context) error {
				return d.retireReverse(ctx, store)
			},
		})
	}
	for _, store := range stores {
		ms := byStore[store]
		out = append(out, flow{
			key:  fmt.Sprintf("reverse-source|%s|%d", store, version),
			name: "reverse source " + store,
			run: func(ctx context.Context) error {
				return d.runReverseSource(ctx, store, ms)
			},
			fatal: func(err error) bool { return errors.Is(err, postgres.ErrPrecondition) },
		})
	}
	return out
}

// retireReverse drops a store's reverse slot and publication if they are
// left over, under the reverse source's lease (so that one instance does
// it, after the source stopped), then idles.
func (d *daemon) retireReverse(ctx context.Context, store string) error {
	slot := pipeline.ReverseSlotName(d.cfg.Slot, store)
	pub := pipeline.ReverseSlotName(d.cfg.Publication, store)
	left, err := postgres.ReverseObjects(ctx, d.cfg.Stores[store], slot, pub)
	if err != nil {
		return err
	}
	if left {
		lease, err := postgres.AcquireLease(ctx, d.cfg.SourceURL, slot, d.log)
		if err != nil {
			return err
		}
		err = postgres.RetireReverse(ctx, d.cfg.Stores[store], slot, pub)
		lease.Release()
		if err != nil {
			return err
		}
		d.log.Info("no mapping of the store is in direction both any more: dropped its reverse slot and publication", "store", store, "slot", slot, "publication", pub)
	}
	<-ctx.Done()
	return nil
}

// runReverseSource captures a service database's tables of direction-both
// mappings into their reverse topics while this instance holds the lease.
func (d *daemon) runReverseSource(ctx context.Context, store string, ms []registry.Mapping) error {
	slot := pipeline.ReverseSlotName(d.cfg.Slot, store)
	log := d.log.With("reverse_source", store)
	lease, err := postgres.AcquireLease(ctx, d.cfg.SourceURL, slot, log)
	if err != nil {
		return err
	}
	defer lease.Release()
	topics := map[postgres.TableName]string{}
	var tables []postgres.TableName
	var names []string
	for i := range ms {
		m := &ms[i]
		tn := postgres.TableName{Schema: "public", Name: m.TargetTable()}
		topics[tn] = pipeline.ReverseTopic(d.cfg.TopicPrefix, &m.Mapping)
		tables = append(tables, tn)
		names = append(names, topics[tn])
	}
	if err := d.producer.EnsureTopics(ctx, names...); err != nil {
		return err
	}
	// The forward sinks create the service tables: until they have, wait.
	for _, tn := range tables {
		if _, err := postgres.DescribeColumns(ctx, d.cfg.Stores[store], tn); err != nil {
			return fmt.Errorf("service table %s of store %s is not there yet (the mapping's forward sink creates it): %v", tn, store, err)
		}
	}
	// The forwarder gives back what the source takes from the budget.
	budget := pipeline.NewBudget(int64(d.cfg.BufferMB) << 20 / 4)
	source, err := postgres.NewSource(postgres.SourceConfig{
		URL:         d.cfg.Stores[store],
		Slot:        slot,
		Publication: pipeline.ReverseSlotName(d.cfg.Publication, store),
		Tables:      tables,
		NoSnapshot:  true,
		Topic: func(s, t string) string {
			return topics[postgres.TableName{Schema: s, Name: t}]
		},
		Encoding:          schema.EncoderConfig{Name: d.cfg.TopicPrefix, Version: d.version, Schemas: d.cfg.EventSchemas},
		HeartbeatInterval: d.cfg.HeartbeatInterval,
		Logger:            log,
		Budget:            budget,
	})
	if err != nil {
		return err
	}
	items := make(chan pipeline.Item, 1024)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		select {
		case <-lease.Lost():
			return fmt.Errorf("lost the lease of reverse slot %s: standing by", slot)
		case <-gctx.Done():
			return nil
		}
	})
	g.Go(func() error {
		return pipeline.Forward(gctx, pipeline.ForwarderConfig{Budget: budget}, items, d.producer, source.Ack)
	})
	g.Go(func() error { return source.Run(gctx, items) })
	return g.Wait()
}

// runReverse applies a mapping's reverse topic into the monolith (and, for
// a Cassandra store, into the service table).
func (d *daemon) runReverse(ctx context.Context, m *registry.Mapping, stats *kafka.ConsumerStats) error {
	log := d.log.With("mapping", m.Name, "flow", "reverse")
	schemaName, table := m.SourceTable()
	cols, err := postgres.DescribeColumns(ctx, d.cfg.SourceURL, postgres.TableName{Schema: schemaName, Name: table})
	if err != nil {
		return err
	}
	rev, target, err := m.Reversed(cols)
	if err != nil {
		return err
	}
	topic := pipeline.ReverseTopic(d.cfg.TopicPrefix, &m.Mapping)
	group := m.GroupID(d.cfg.TopicPrefix) + ".reverse"
	if err := d.producer.EnsureTopics(ctx, topic, d.cfg.TopicPrefix+".dlq"); err != nil {
		return err
	}
	mono, err := postgres.NewSink(ctx, postgres.SinkConfig{
		URL: d.cfg.SourceURL, Schema: schemaName, Mapping: m.Name, Group: group, Topic: topic, Target: target,
		Existing: true, NoOrigin: true, Method: postgres.MethodInsert, Logger: log,
		Conflict: &postgres.Conflict{Side: postgres.SideMonolith, Policy: m.Conflict, Tag: pipeline.ReverseOrigin(&m.Mapping)},
	})
	if err != nil {
		return err
	}
	var sink pipeline.Sink = &shaped{Sink: mono, mapping: &rev}
	storeURL := d.cfg.Stores[strings.ToLower(m.Store)]
	if storeKind(storeURL) == "cassandra" {
		fwd, err := m.ShapeTarget(cols)
		if err != nil {
			mono.Close(ctx)
			return err
		}
		cass, err := cassandra.NewSink(ctx, cassandra.SinkConfig{URL: storeURL, Mapping: m.Name, Target: fwd, Logger: log,
			MaxInFlight: d.cfg.CassandraInFlight, TLS: d.cfg.CassandraTLS, CAFile: d.cfg.CassandraCAFile,
			Username: d.cfg.CassandraUsername, Password: d.cfg.CassandraPassword})
		if err != nil {
			mono.Close(ctx)
			return err
		}
		sink = tee{sink, cass}
	}
	sink = d.admin.instrument(m.Name+reverseSuffix, sink)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sink.Close(cctx)
	}()
	dialer, err := d.cfg.KafkaSecurity().Dialer()
	if err != nil {
		return err
	}
	log.Info("reverse flow started", "topic", topic, "into", m.Source)
	return kafka.Consume(ctx, kafka.ConsumerConfig{
		Dialer: dialer, Brokers: d.cfg.KafkaBrokers, GroupID: group, Topic: topic,
		Mapping:     &pipeline.Mapping{Name: m.Name},
		DeadLetters: d.producer, DLQTopic: d.cfg.TopicPrefix + ".dlq", Logger: log,
		MaxBatch: d.cfg.SinkBatch, MaxBatchBytes: d.cfg.SinkBatchMB << 20,
		SkipOrigin: pipeline.ForwardOrigin(&m.Mapping),
	}, sink, stats)
}

// shaped renames a batch's columns (the service's names to the monolith's)
// before its sink applies it.
type shaped struct {
	pipeline.Sink
	mapping *pipeline.Mapping
}

func (s *shaped) Apply(ctx context.Context, batch []pipeline.Change) error {
	out := make([]pipeline.Change, len(batch))
	for i, c := range batch {
		s.mapping.Shape(&c)
		out[i] = c
	}
	return s.Sink.Apply(ctx, out)
}

// tee applies a batch to several sinks in order; a failure of any is the
// batch's (each sink is idempotent, so the retry is safe).
type tee []pipeline.Sink

func (t tee) Apply(ctx context.Context, batch []pipeline.Change) error {
	for _, s := range t {
		if err := s.Apply(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

func (t tee) Close(ctx context.Context) error {
	var errs []error
	for _, s := range t {
		errs = append(errs, s.Close(ctx))
	}
	return errors.Join(errs...)
}
