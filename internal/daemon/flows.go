package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/registry"
	"github.com/scoop-cdc/scoop/pipeline"
)

// A flow is one unit of work the daemon keeps running: the forward flow
// (the monolith's slot into Kafka) and one sink flow per mapping (its topic
// into its store). A reverse flow (a service store back into the monolith)
// and a verify job are further kinds: the reconcile loop only compares keys.
type flow struct {
	// key is the flow's identity: while the registry asks for the same
	// key, the flow keeps running; a changed key restarts it.
	key  string
	name string // in logs
	run  func(ctx context.Context) error
	// fatal says whether an error of run must stop the daemon (the operator
	// has to act); any other error restarts the flow with backoff.
	fatal func(error) bool
}

// flows is what the registry asks this instance to run.
func (d *daemon) flows(version int64, mappings, usable []registry.Mapping) []flow {
	// The forward flow restarts on every registry change (cheap), so table
	// set, publication and requested snapshots follow the registry. It
	// follows every mapping, also those whose store this instance cannot
	// reach: the publication and slot are shared by all instances, and
	// another one may serve them.
	out := []flow{{
		key:  fmt.Sprintf("forward|%d", version),
		name: "source",
		run: func(ctx context.Context) error {
			lease, err := d.leadership(ctx)
			if err != nil {
				return err
			}
			source, err := d.newSource(mappings)
			if err != nil {
				return err
			}
			d.source.Store(source)
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go func() {
				select {
				case <-lease.Lost():
					cancel()
				case <-sctx.Done():
				}
			}()
			err = source.Run(sctx, d.items)
			select {
			case <-lease.Lost():
				d.lease = nil
				d.stats.Leading.Store(false)
				lease.Release()
				return fmt.Errorf("lost the source leadership of slot %s (its session in the monolith ended): standing by", d.cfg.Slot)
			default:
				return err
			}
		},
		fatal: func(err error) bool { return errors.Is(err, postgres.ErrPrecondition) },
	}}
	for _, m := range usable {
		spec, _ := json.Marshal(m.Mapping)
		stats := d.admin.mappingStats(m.Name)
		out = append(out, flow{
			key:  fmt.Sprintf("sink|%s|%d|%s", m.Name, m.Generation, spec),
			name: "mapping " + m.Name,
			run: func(ctx context.Context) error {
				d.log.Info("mapping started", "mapping", m.Name, "generation", m.Generation, "source", m.Source, "store", m.Store)
				return runMapping(ctx, d.cfg, &m, d.producer, stats, d.admin.sinkMetrics(m.Name), d.log)
			},
		})
	}
	return append(out, d.reverseFlows(version, usable)...)
}

// leadership returns the lease of the slot's source, waiting (standing by)
// while another instance holds it. The lease is kept across restarts of
// the forward flow; only one forward flow runs at a time.
func (d *daemon) leadership(ctx context.Context) (*postgres.Lease, error) {
	if d.lease != nil {
		select {
		case <-d.lease.Lost():
			d.lease.Release()
			d.lease = nil
			d.stats.Leading.Store(false)
		default:
			return d.lease, nil
		}
	}
	lease, err := postgres.AcquireLease(ctx, d.cfg.SourceURL, d.cfg.Slot, d.log)
	if err != nil {
		return nil, err
	}
	d.lease = lease
	d.stats.Leading.Store(true)
	return lease, nil
}

// supervise polls the registry every second and reconciles the running
// flows with the ones it asks for: flows no longer asked for are stopped
// (before new ones start, so two sources never share the slot), new ones
// started.
func (d *daemon) supervise(ctx context.Context) error {
	running := map[string]*worker{}
	defer func() {
		for _, w := range running {
			w.stop()
		}
	}()
	fatal := make(chan error, 1)
	lastVersion := int64(-1)
	next := time.After(0) // reconcile at once, then every second
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-fatal:
			return err
		case <-next:
			next = time.After(time.Second)
		}
		d.admin.mon.tick("reconcile")
		version, err := d.registry.Version(ctx)
		if err != nil {
			d.log.Warn("read mapping registry", "error", err)
			continue
		}
		if version == lastVersion {
			continue
		}
		mappings, _, err := d.registry.List(ctx)
		if err != nil {
			d.log.Warn("read mapping registry", "error", err)
			continue
		}
		lastVersion = version
		usable := d.usable(mappings)
		want := d.flows(version, mappings, usable)
		keep := map[string]bool{}
		for _, f := range want {
			keep[f.key] = true
		}
		for key, w := range running {
			if !keep[key] {
				w.stop()
				delete(running, key)
				d.log.Info("flow stopped", "flow", w.name)
			}
		}
		for _, f := range want {
			if running[f.key] == nil {
				running[f.key] = start(ctx, f.name, func(ctx context.Context) error { return d.keep(ctx, f, fatal) })
			}
		}
		d.admin.setMappings(usable)
		d.admin.ready.Store(true)
	}
}

// keep runs a flow until ctx ends, restarting it with backoff (1 s to 30 s,
// reset after a minute of good running) unless its error is fatal, which
// is handed to supervise.
func (d *daemon) keep(ctx context.Context, f flow, fatal chan<- error) error {
	backoff := pipeline.Backoff{Min: time.Second, Max: 30 * time.Second}
	for {
		started := time.Now()
		err := f.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if f.fatal != nil && f.fatal(err) {
			select {
			case fatal <- err:
			default:
			}
			return err
		}
		if time.Since(started) > time.Minute {
			backoff.Reset()
		}
		wait := backoff.Next()
		d.log.Error(f.name+" stopped; restarting", "error", err, "backoff", wait)
		if pipeline.Sleep(ctx, wait) != nil {
			return nil
		}
	}
}

// worker is a running goroutine that can be stopped.
type worker struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
}

func start(ctx context.Context, name string, fn func(context.Context) error) *worker {
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		fn(wctx)
	}()
	return w
}

// stop cancels the worker and waits for it; safe after it has returned.
func (w *worker) stop() {
	w.cancel()
	<-w.done
}
