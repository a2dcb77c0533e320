// Package cutover hands the table of a mapping with direction: both from
// one side to the other (`scoop mappings flip`, docs/runbook.md): it fences
// the side that gives the table up (connectors/postgres.Fence), waits until
// scoop has carried everything written there before the fence to the other
// side, then lifts the other side's fence and records the new owner in the
// monolith (scoop.owners).
//
// Contract: nothing an application committed on the fenced side before the
// fence is left behind (the flip returns only when the source's slot has
// confirmed past the fence's WAL position and the consumer group has
// committed every offset the topic held once it had); a write after the
// fence on the fenced side fails with an error that names the mapping. A
// flip that times out leaves the fence in place and says what is pending;
// running the same flip again resumes it, the opposite flip undoes it.
package cutover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/registry"
	"github.com/scoop-cdc/scoop/pipeline"
)

// Errors of a flip that cannot start; the message names the fix.
var (
	ErrNotBoth        = errors.New("mapping is not bidirectional")
	ErrAlreadyFlipped = errors.New("mapping is already flipped")
	ErrNotFlipped     = errors.New("mapping is not flipped")
	ErrTimeout        = errors.New("flip not finished in time")
)

// Mappings finds a registered mapping.
type Mappings interface {
	Get(ctx context.Context, name string) (*registry.Mapping, error)
}

// Offsets answers the offset questions of the wait (kafka.Admin).
type Offsets interface {
	Ranges(ctx context.Context, topic string) ([]kafka.Range, error)
	Committed(ctx context.Context, group, topic string, partitions []int) (map[int]int64, error)
}

// Config is what a flip needs.
type Config struct {
	SourceURL   string            // the monolith (SCOOP_SOURCE_URL)
	Slot        string            // the forward slot (SCOOP_SLOT)
	TopicPrefix string            // SCOOP_TOPIC_PREFIX
	Stores      map[string]string // store name (lower case) -> URL
	Mappings    Mappings
	Offsets     Offsets
	Timeout     time.Duration // how long to wait for the drain (default 5m)
	Poll        time.Duration // how often to look (default 250ms)
	Out         io.Writer     // progress
}

// Flip hands mapping name's table to the service (back: to the monolith).
func Flip(ctx context.Context, cfg Config, name string, back bool) error {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	m, err := cfg.Mappings.Get(ctx, name)
	if err != nil {
		return err
	}
	if m.Direction != pipeline.DirectionBoth {
		dir := m.Direction
		if dir == "" {
			dir = pipeline.DirectionForward
		}
		return fmt.Errorf("%w: mapping %s has direction %s, and only a mapping with direction: both can be flipped (the service's writes must flow back to the monolith); set direction: both and conflict: last-writer-wins for it in the mappings file, run `scoop mappings apply -f FILE`, let it settle (`scoop verify %s`), then flip",
			ErrNotBoth, name, dir, name)
	}
	storeURL := cfg.Stores[strings.ToLower(m.Store)]
	if storeURL == "" {
		return fmt.Errorf("mapping %s: store %s is not configured: set SCOOP_STORE_%s_URL", name, m.Store, strings.ToUpper(m.Store))
	}
	unlock, err := postgres.LockFlip(ctx, cfg.SourceURL, cfg.Slot, name)
	if err != nil {
		return err
	}
	defer unlock()
	f := &flip{cfg: cfg, m: m, storeURL: storeURL}
	f.mono.Schema, f.mono.Name = m.SourceTable()
	f.svc = postgres.TableName{Schema: "public", Name: m.TargetTable()}
	f.pgStore = isPostgres(storeURL)
	owners, err := postgres.Owners(ctx, cfg.SourceURL, cfg.Slot)
	if err != nil {
		return err
	}
	f.owner = owners[name]
	if f.owner.Owner == "" {
		f.owner.Owner = postgres.OwnerMonolith
	}
	if back {
		return f.back(ctx)
	}
	return f.forward(ctx)
}

type flip struct {
	cfg      Config
	m        *registry.Mapping
	storeURL string
	pgStore  bool
	mono     postgres.TableName // the monolith's table
	svc      postgres.TableName // the service's table (PostgreSQL store)
	owner    postgres.Ownership
}

func (f *flip) printf(format string, args ...any) { fmt.Fprintf(f.cfg.Out, format+"\n", args...) }

// forward: fence the monolith, drain the forward flow, open the service.
func (f *flip) forward(ctx context.Context) error {
	name := f.m.Name
	svcFenced := false
	if f.pgStore {
		var err error
		if svcFenced, err = postgres.Fenced(ctx, f.storeURL, f.svc); err != nil {
			return err
		}
	}
	if f.owner.Owner == postgres.OwnerService && !svcFenced {
		return fmt.Errorf("%w: mapping %s was flipped to the service at %s (fence %s); to give it back to the monolith: scoop mappings flip %s --back",
			ErrAlreadyFlipped, name, f.owner.ChangedAt.UTC().Format(time.RFC3339), f.owner.FenceLSN, name)
	}
	fence := postgres.Fence{URL: f.cfg.SourceURL, Table: f.mono,
		Message: fmt.Sprintf("scoop: mapping %s was flipped to the service (store %s): %s is read-only in the monolith; write to the service instead, or undo with `scoop mappings flip %s --back`", name, f.m.Store, f.mono, name),
		Hint:    "docs/runbook.md (flip) describes the cutover",
	}
	lsn, err := fence.Install(ctx)
	if err != nil {
		return err
	}
	f.printf("fenced %s in the monolith at %s: applications' writes there now fail", f.mono, postgres.LSNText(lsn))
	d := &drain{
		what:    "forward flow (monolith -> service)",
		slotURL: f.cfg.SourceURL, slot: f.cfg.Slot, fence: lsn,
		group: f.m.GroupID(f.cfg.TopicPrefix), topic: f.m.TopicName(f.cfg.TopicPrefix),
	}
	if err := f.wait(ctx, d, fmt.Sprintf("%s stays fenced: run `scoop mappings flip %s` again to keep waiting, or `scoop mappings flip %s --back` to undo", f.mono, name, name)); err != nil {
		return err
	}
	if svcFenced {
		if err := postgres.RemoveFence(ctx, f.storeURL, f.svc); err != nil {
			return err
		}
		f.printf("lifted the fence of %s in store %s", f.svc, f.m.Store)
	}
	if err := postgres.SetOwner(ctx, f.cfg.SourceURL, f.cfg.Slot, name, postgres.OwnerService, lsn); err != nil {
		return err
	}
	f.printf("mapping %s flipped: the service (store %s) owns %s; undo with `scoop mappings flip %s --back`", name, f.m.Store, f.m.TargetTable(), name)
	return nil
}

// back: fence the service, drain the reverse flow, open the monolith.
func (f *flip) back(ctx context.Context) error {
	name := f.m.Name
	monoFenced, err := postgres.Fenced(ctx, f.cfg.SourceURL, f.mono)
	if err != nil {
		return err
	}
	if f.owner.Owner != postgres.OwnerService && !monoFenced {
		return fmt.Errorf("%w: the monolith owns mapping %s's table %s already; to hand it to the service: scoop mappings flip %s",
			ErrNotFlipped, name, f.mono, name)
	}
	revGroup := f.m.GroupID(f.cfg.TopicPrefix) + ".reverse"
	revTopic := pipeline.ReverseTopic(f.cfg.TopicPrefix, &f.m.Mapping)
	d := &drain{what: "reverse flow (service -> monolith)", group: revGroup, topic: revTopic}
	undo := fmt.Sprintf("run `scoop mappings flip %s --back` again to keep waiting, or `scoop mappings flip %s` to hand the table to the service again", name, name)
	var lsn uint64
	if f.pgStore {
		fence := postgres.Fence{URL: f.storeURL, Table: f.svc,
			Message: fmt.Sprintf("scoop: mapping %s was flipped back to the monolith (%s): %s is read-only in the service's store %s; hand it to the service again with `scoop mappings flip %s`", name, f.mono, f.svc, f.m.Store, name),
			Hint:    "docs/runbook.md (flip) describes the cutover",
		}
		if lsn, err = fence.Install(ctx); err != nil {
			return err
		}
		f.printf("fenced %s in store %s at %s: applications' writes there now fail", f.svc, f.m.Store, postgres.LSNText(lsn))
		d.slotURL, d.slot, d.fence = f.storeURL, pipeline.ReverseSlotName(f.cfg.Slot, f.m.Store), lsn
		undo = f.svc.String() + " stays fenced: " + undo
	} else {
		// Cassandra has no triggers: the fence is the service itself.
		f.printf("store %s is Cassandra, which has no triggers: scoop cannot fence %s. The service must stop writing it NOW (before this command); scoop waits for what it published to %s to be applied in the monolith", f.m.Store, f.m.TargetTable(), revTopic)
	}
	if err := f.wait(ctx, d, undo); err != nil {
		return err
	}
	if err := postgres.RemoveFence(ctx, f.cfg.SourceURL, f.mono); err != nil {
		return err
	}
	if err := postgres.SetOwner(ctx, f.cfg.SourceURL, f.cfg.Slot, name, postgres.OwnerMonolith, lsn); err != nil {
		return err
	}
	f.printf("mapping %s flipped back: the monolith owns %s again and takes writes", name, f.mono)
	return nil
}

// wait polls d until it is drained, printing each new state, or fails
// after the timeout naming what is pending and what then (next).
func (f *flip) wait(ctx context.Context, d *drain, next string) error {
	f.printf("waiting (up to %s) for the %s to apply everything before the fence", f.cfg.Timeout, d.what)
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	start := time.Now()
	last, lastAt := "", time.Time{}
	for {
		pending := d.pending(ctx, f.cfg.Offsets)
		if pending == "" {
			f.printf("drained in %s", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if pending != last || time.Since(lastAt) > 5*time.Second {
			f.printf("  %s: %s", time.Since(start).Round(time.Second), pending)
			last, lastAt = pending, time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: mapping %s: not drained within %s (--timeout): still pending: %s (does scoop run and the mapping stream? see scoop status); %s", ErrTimeout, f.m.Name, f.cfg.Timeout, pending, next)
		case <-time.After(f.cfg.Poll):
		}
	}
}

// drain is one flow to wait for: its source slot past the fence (no slot:
// the service publishes itself), then its consumer group at the topic's
// end offsets as they were once the slot had passed.
type drain struct {
	what          string
	slotURL, slot string
	fence         uint64
	group, topic  string
	ends          []kafka.Range // nil until taken
}

// pending says what is still pending ("" when nothing).
func (d *drain) pending(ctx context.Context, offsets Offsets) string {
	if d.ends == nil {
		if d.slot != "" {
			confirmed, err := postgres.ConfirmedLSN(ctx, d.slotURL, d.slot)
			if err != nil {
				return fmt.Sprintf("source slot %s: %v", d.slot, err)
			}
			if confirmed < d.fence {
				return fmt.Sprintf("source slot %s has confirmed %s, the fence is at %s (%d bytes of WAL to deliver to Kafka)",
					d.slot, postgres.LSNText(confirmed), postgres.LSNText(d.fence), d.fence-confirmed)
			}
		}
		ends, err := offsets.Ranges(ctx, d.topic)
		if err != nil {
			return fmt.Sprintf("topic %s: %v", d.topic, err)
		}
		if ends == nil {
			ends = []kafka.Range{}
		}
		d.ends = ends
	}
	ps := make([]int, len(d.ends))
	for i, r := range d.ends {
		ps[i] = r.Partition
	}
	committed, err := offsets.Committed(ctx, d.group, d.topic, ps)
	if err != nil {
		return fmt.Sprintf("consumer group %s: %v", d.group, err)
	}
	var behind []string
	var total int64
	for _, r := range d.ends {
		from := r.First
		if c, ok := committed[r.Partition]; ok && c > from {
			from = c
		}
		if r.End > from {
			total += r.End - from
			behind = append(behind, fmt.Sprintf("%d: at %d of %d", r.Partition, from, r.End))
		}
	}
	if total == 0 {
		return ""
	}
	sort.Strings(behind)
	return fmt.Sprintf("consumer group %s has %d events of %s before the fence to apply (partition %s)", d.group, total, d.topic, strings.Join(behind, ", "))
}

func isPostgres(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql")
}
