package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/registry"
)

// replayCommand re-applies a mapping's history (from an offset or a time) or
// a fresh copy of its table into its store while the other mappings run.
//
// Offsets and times: the mapping gets a new generation, that is a new
// consumer group positioned at the requested offsets and fresh sink
// progress; running daemons switch to it within a second. The PostgreSQL
// sink re-applies the history in order and ends equal to the source; the
// Cassandra sink's write timestamps keep rows from regressing.
//
// Snapshot: the source copies the table again with an incremental snapshot
// while it keeps streaming; the copy flows through the topic like any change.
func replayCommand(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("scoop replay", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fromOffset := fs.Int64("from-offset", -1, "replay from this offset")
	partition := fs.Int("partition", -1, "with --from-offset: only this partition (the others keep their position)")
	fromTime := fs.String("from-time", "", "replay from this time (RFC 3339)")
	snapshot := fs.Bool("snapshot", false, "copy the table again instead of replaying history")
	wait := fs.Duration("wait", 10*time.Minute, "how long to show progress (0: do not wait)")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New("usage: scoop replay NAME (--from-offset N [--partition P] | --from-time RFC3339 | --snapshot)")
	}
	name := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	modes := 0
	for _, set := range []bool{*fromOffset >= 0, *fromTime != "", *snapshot} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return errors.New("scoop replay: give exactly one of --from-offset N, --from-time RFC3339 or --snapshot")
	}
	if *partition >= 0 && *fromOffset < 0 {
		return errors.New("scoop replay: --partition goes with --from-offset")
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if cfg.SourceURL == "" || len(cfg.KafkaBrokers) == 0 {
		return errors.New("scoop replay needs SCOOP_SOURCE_URL (the registry) and SCOOP_KAFKA_BROKERS")
	}
	reg := postgres.NewRegistry(cfg.SourceURL, cfg.Slot)
	m, err := reg.Get(ctx, name)
	if err != nil {
		return err
	}
	topic := m.TopicName(cfg.TopicPrefix)
	admin, err := kafka.NewAdmin(cfg.KafkaBrokers, cfg.KafkaSecurity())
	if err != nil {
		return err
	}
	if err := kafka.CheckSecurity(ctx, cfg.KafkaBrokers, cfg.KafkaSecurity()); err != nil {
		return err
	}

	if *snapshot {
		s, t := m.SourceTable()
		table := postgres.TableName{Schema: s, Name: t}
		if err := reg.Resnapshot(ctx, table); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replay %s: snapshot of %s requested\n", name, table)
		if *wait == 0 {
			return nil
		}
		deadline := time.Now().Add(*wait)
		p := newProgress(stdout)
		for {
			done, err := reg.Snapshotted(ctx, table)
			if err != nil {
				return err
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				p.clear()
				return fmt.Errorf("replay %s: snapshot of %s not finished after %s (is scoop run up?)", name, table, *wait)
			}
			// The rows read so far, from the daemon leading the slot.
			rows, estimate, ok := snapshotRows(ctx, cfg.AdminAddr, cfg.AdminToken, name)
			if ok {
				p.show(fmt.Sprintf("replay %s: snapshot of %s", name, table), rows, estimate, "rows read")
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
		p.note("replay %s: snapshot of %s copied into %s", name, table, topic)
		return waitCaughtUp(ctx, stdout, admin, name, m.GroupID(cfg.TopicPrefix), topic, *wait)
	}

	ranges, err := admin.Ranges(ctx, topic)
	if err != nil {
		return err
	}
	start := map[int]int64{}
	switch {
	case *fromOffset >= 0:
		found := false
		for _, r := range ranges {
			if *partition >= 0 && r.Partition != *partition {
				continue
			}
			found = true
			if *fromOffset < r.First || *fromOffset > r.End {
				return fmt.Errorf("%w: offset %d of topic %s partition %d: the partition holds offsets %d to %d (the end, %d, replays nothing)",
					kafka.ErrOffsetOutOfRange, *fromOffset, topic, r.Partition, r.First, max(r.First, r.End-1), r.End)
			}
			start[r.Partition] = *fromOffset
		}
		if !found {
			return fmt.Errorf("%w: topic %s has no partition %d (partitions 0 to %d)", kafka.ErrOffsetOutOfRange, topic, *partition, len(ranges)-1)
		}
		if *partition >= 0 {
			// The other partitions keep the position of the current group.
			var ps []int
			for _, r := range ranges {
				ps = append(ps, r.Partition)
			}
			committed, err := admin.Committed(ctx, m.GroupID(cfg.TopicPrefix), topic, ps)
			if err != nil {
				return err
			}
			for _, r := range ranges {
				if r.Partition != *partition {
					if o := committed[r.Partition]; o >= 0 {
						start[r.Partition] = o
					} else {
						start[r.Partition] = r.First
					}
				}
			}
		}
	default:
		at, err := time.Parse(time.RFC3339, *fromTime)
		if err != nil {
			return fmt.Errorf("scoop replay: --from-time %q is not RFC 3339 (e.g. 2026-11-25T10:00:00Z)", *fromTime)
		}
		if start, err = admin.OffsetsAt(ctx, topic, at); err != nil {
			return err
		}
	}
	next, err := reg.NextGeneration(ctx, name, func(next *registry.Mapping) error {
		return admin.Commit(ctx, next.GroupID(cfg.TopicPrefix), topic, start)
	})
	if err != nil {
		return err
	}
	var parts []string
	for _, r := range ranges {
		parts = append(parts, fmt.Sprintf("%d@%d", r.Partition, start[r.Partition]))
	}
	sort.Strings(parts)
	fmt.Fprintf(stdout, "replay %s: generation %d (consumer group %s) starts at partition@offset %s\n", name, next.Generation, next.GroupID(cfg.TopicPrefix), strings.Join(parts, " "))
	if *wait == 0 {
		return nil
	}
	return waitCaughtUp(ctx, stdout, admin, name, next.GroupID(cfg.TopicPrefix), topic, *wait)
}

// waitCaughtUp shows the group's progress until it reached the topic's end
// as it was when the replay began.
func waitCaughtUp(ctx context.Context, stdout io.Writer, admin *kafka.Admin, name, group, topic string, wait time.Duration) error {
	ranges, err := admin.Ranges(ctx, topic)
	if err != nil {
		return err
	}
	var ps []int
	var total int64
	for _, r := range ranges {
		ps = append(ps, r.Partition)
		total += r.End
	}
	deadline := time.Now().Add(wait)
	p := newProgress(stdout)
	for {
		committed, err := admin.Committed(ctx, group, topic, ps)
		if err != nil {
			return err
		}
		var done int64
		caughtUp := true
		for _, r := range ranges {
			c := committed[r.Partition]
			if c < r.End {
				caughtUp = false
			}
			done += min(max(c, 0), r.End)
		}
		p.show("replay "+name, done, total, "events applied")
		if caughtUp {
			p.note("replay %s: caught up", name)
			return nil
		}
		if time.Now().After(deadline) {
			p.clear()
			return fmt.Errorf("replay %s: not caught up after %s (is scoop run up?)", name, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// snapshotRows is a mapping's snapshot progress as the daemon at addr
// reports it in /status (ok: it answered and the mapping is snapshotting
// there; estimate 0: the table's size is unknown).
func snapshotRows(ctx context.Context, addr, token, name string) (rows, estimate int64, ok bool) {
	body, err := fetchStatus(ctx, addr, token)
	if err != nil {
		return 0, 0, false
	}
	var doc struct {
		Mappings map[string]struct {
			Snapshot *struct {
				Rows      int64 `json:"rows"`
				Estimated int64 `json:"estimated_rows"`
			} `json:"snapshot"`
		} `json:"mappings"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return 0, 0, false
	}
	s := doc.Mappings[name].Snapshot
	if s == nil {
		return 0, 0, false
	}
	return s.Rows, s.Estimated, true
}
