package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/scoop-cdc/scoop/connectors/cassandra"
	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/daemon"
	"github.com/scoop-cdc/scoop/internal/registry"
	"github.com/scoop-cdc/scoop/internal/verify"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// Exit statuses of scoop verify, for deploy pipelines.
const (
	verifyEqual     = 0
	verifyDifferent = 1
	verifyError     = 2
)

// verifyCommand is `scoop verify NAME | --all`: exit status 0 when every
// mapping's target equals its monolith table, 1 when one differs, 2 on error.
func verifyCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scoop verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	all := fs.Bool("all", false, "verify every registered mapping")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	repair := fs.Bool("repair", false, "send the differing rows through the pipeline again, then verify them again")
	rate := fs.Int("max-rows-per-second", 0, "read at most this many rows per second from each store (0: no limit)")
	chunk := fs.Int("chunk-rows", 10000, "rows per key range")
	settle := fs.Duration("settle-timeout", 2*time.Minute, "how long to wait for the pipeline to catch up before comparing suspects again")
	quiet := fs.Bool("quiet", false, "no progress lines")
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return verifyError
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "scoop: %v\n", err)
		return verifyError
	}
	if (name == "") == !*all || fs.NArg() > 0 {
		return fail(errors.New("usage: scoop verify NAME [--repair] [--json] [--max-rows-per-second N] | scoop verify --all [...]"))
	}
	cfg, err := loadConfig()
	if err != nil {
		return fail(err)
	}
	if cfg.SourceURL == "" {
		return fail(errors.New("SCOOP_SOURCE_URL is not set: verify reads the monolith and its mapping registry"))
	}
	reg := postgres.NewRegistry(cfg.SourceURL, cfg.Slot)
	var mappings []registry.Mapping
	if *all {
		if mappings, _, err = reg.List(ctx); err != nil {
			return fail(err)
		}
	} else {
		m, err := reg.Get(ctx, name)
		if err != nil {
			return fail(err)
		}
		mappings = append(mappings, *m)
	}
	owners, err := postgres.Owners(ctx, cfg.SourceURL, cfg.Slot)
	if err != nil {
		return fail(err)
	}
	if *repair {
		for _, m := range mappings {
			url := cfg.Stores[strings.ToLower(m.Store)]
			if owners[m.Name].Owner == postgres.OwnerService && strings.HasPrefix(url, "cassandra://") {
				return fail(fmt.Errorf("verify %s --repair: the mapping was flipped to the service, whose Cassandra table is now the table's truth; a repair would read the service's rows and publish them to the reverse topic, but Cassandra has no lock or snapshot that orders that read against the service's own writes (servicewriter publishes each write before making it), so a row read just before a write could be sent with a newer version than that write and overwrite it in both stores; rewrite the differing rows through the service's servicewriter instead, or verify without --repair", m.Name))
			}
			if from, loser := repairSide(owners[m.Name].Owner), losingSide(m.Conflict); m.Direction == pipeline.DirectionBoth && from == loser {
				return fail(fmt.Errorf("verify %s --repair: the repair would publish the %s's rows, and under conflict: %s the other side applies a write of the %s only if it was made on top of the other side's current version, which a repaired row cannot say: it would be refused wherever the other side has the row or remembers its delete; the rows stay different until the other side writes them again (verify without --repair lists them)", m.Name, from, m.Conflict, from))
			}
		}
	}
	var progress io.Writer
	onTerminal := false
	if !*quiet {
		progress = stderr
		if f, ok := stderr.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				onTerminal = true
			}
		}
	}
	code := verifyEqual
	var reports []*verify.Report
	for _, m := range mappings {
		url, ok := cfg.Stores[strings.ToLower(m.Store)]
		if !ok {
			return fail(fmt.Errorf("verify %s: store %q has no URL: set %s", m.Name, m.Store, pipeline.StoreEnvVar(m.Store)))
		}
		flipped := owners[m.Name].Owner == postgres.OwnerService
		vcfg := verify.Config{
			SourceURL: cfg.SourceURL, StoreURL: url, Mapping: m.Mapping, ServiceOwns: flipped,
			Cassandra: cassandra.SinkConfig{TLS: cfg.CassandraTLS, CAFile: cfg.CassandraCAFile,
				Username: cfg.CassandraUsername, Password: cfg.CassandraPassword},
			ChunkRows: *chunk, MaxRowsPerSecond: *rate, Progress: progress, ProgressBar: onTerminal,
		}
		if len(cfg.KafkaBrokers) > 0 {
			vcfg.Settle = settler(cfg, &m, *settle)
			if flipped {
				vcfg.Settle = reverseSettler(cfg, &m, url, *settle)
			}
		}
		rep, err := verify.Run(ctx, vcfg)
		if err != nil {
			return fail(err)
		}
		if *repair && !rep.Equal() {
			if rep, err = repairMapping(ctx, cfg, &m, url, vcfg, rep, stderr); err != nil {
				return fail(err)
			}
		}
		reports = append(reports, rep)
		if !rep.Equal() {
			code = verifyDifferent
		}
		if !*asJSON {
			printReport(stdout, rep)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		var out any = reports
		if !*all {
			out = reports[0]
		}
		if err := enc.Encode(out); err != nil {
			return fail(err)
		}
	}
	return code
}

func printReport(w io.Writer, r *verify.Report) {
	state := "equal"
	if !r.Equal() {
		state = "DIFFERENT"
	}
	from, to := r.Source, r.Store+"."+r.Target
	if r.Reference == verify.ReferenceService {
		from, to = to+" (flipped: the service owns it)", from
	}
	fmt.Fprintf(w, "verify %s: %s -> %s: %s: %d rows, %d missing, %d extra, %d different (%.1fs)\n",
		r.Mapping, from, to, state, r.Rows, r.Missing, r.Extra, r.Different, r.Seconds)
	for _, d := range r.Diffs {
		fmt.Fprintf(w, "  %-9s %s\n", d.Kind, d.Key)
	}
	if n := len(r.Unsettled); n > 0 {
		fmt.Fprintf(w, "  %d rows kept changing through every re-check and could not be compared (not counted as different; run verify again when writes are quieter):", n)
		for i, k := range r.Unsettled {
			if i == 10 {
				fmt.Fprintf(w, " ...")
				break
			}
			fmt.Fprintf(w, " %s", k)
		}
		fmt.Fprintln(w)
	}
	if r.Truncated {
		fmt.Fprintf(w, "  (more than 10000 suspect keys: only those were compared again, so the run counts as different; scoop replay %s --snapshot copies the table again)\n", r.Mapping)
	}
	if r.Repaired > 0 {
		fmt.Fprintf(w, "  repaired %d rows\n", r.Repaired)
	}
}

// settler waits until the pipeline delivered every change the monolith
// committed up to lsn: the slot confirmed it (Kafka holds it), then the
// mapping's consumer group committed the topic's end as it was then (the
// store applied it).
func settler(cfg *daemon.Config, m *registry.Mapping, timeout time.Duration) func(context.Context, string) error {
	return func(ctx context.Context, lsn string) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := waitSlot(ctx, cfg.SourceURL, cfg.Slot, lsn, fmt.Sprintf("slot %s (SCOOP_SLOT)", cfg.Slot)); err != nil {
			return err
		}
		return waitApplied(ctx, cfg, m.TopicName(cfg.TopicPrefix), m.GroupID(cfg.TopicPrefix))
	}
}

// reverseSettler waits until the reverse flow of a flipped mapping
// delivered every change the service committed up to lsn: a PostgreSQL
// store's reverse slot confirmed it, then the reverse consumer group
// committed the reverse topic's end as it was then (the monolith applied
// it). A Cassandra service publishes each write before making it: the
// reverse topic's end, read after the rows were, covers them (lsn is "").
func reverseSettler(cfg *daemon.Config, m *registry.Mapping, storeURL string, timeout time.Duration) func(context.Context, string) error {
	return func(ctx context.Context, lsn string) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if lsn != "" {
			slot := pipeline.ReverseSlotName(cfg.Slot, m.Store)
			if err := waitSlot(ctx, storeURL, slot, lsn, fmt.Sprintf("reverse slot %s of store %s", slot, m.Store)); err != nil {
				return err
			}
		}
		return waitApplied(ctx, cfg, pipeline.ReverseTopic(cfg.TopicPrefix, &m.Mapping), m.GroupID(cfg.TopicPrefix)+".reverse")
	}
}

// waitSlot waits until a slot of the database at url confirmed lsn.
func waitSlot(ctx context.Context, url, slot, lsn, what string) error {
	conn, err := postgres.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for {
		var passed *bool
		err := conn.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, slot, lsn).Scan(&passed)
		if err != nil {
			return fmt.Errorf("%s does not exist or cannot be read: is scoop run up? (%w)", what, err)
		}
		if passed != nil && *passed {
			return nil
		}
		if err := pause(ctx, fmt.Sprintf("the %s to confirm %s (is scoop run up?)", what, lsn)); err != nil {
			return err
		}
	}
}

// waitApplied waits until group committed topic's end offsets as they are
// now.
func waitApplied(ctx context.Context, cfg *daemon.Config, topic, group string) error {
	admin, err := kafka.NewAdmin(cfg.KafkaBrokers, cfg.KafkaSecurity())
	if err != nil {
		return err
	}
	ranges, err := admin.Ranges(ctx, topic)
	if err != nil {
		return err
	}
	var ps []int
	for _, r := range ranges {
		ps = append(ps, r.Partition)
	}
	for {
		committed, err := admin.Committed(ctx, group, topic, ps)
		if err != nil {
			return err
		}
		caughtUp := true
		for _, r := range ranges {
			if r.End > r.First && committed[r.Partition] < r.End {
				caughtUp = false
			}
		}
		if caughtUp {
			return nil
		}
		if err := pause(ctx, fmt.Sprintf("consumer group %s to apply %s", group, topic)); err != nil {
			return err
		}
	}
}

func pause(ctx context.Context, what string) error {
	select {
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("timed out waiting for %s (--settle-timeout)", what)
		}
		return ctx.Err()
	case <-time.After(200 * time.Millisecond):
		return nil
	}
}

// repairMapping publishes the differing rows of the mapping's reference
// again (postgres.Republish: current rows as snapshot reads, deletes and
// tombstones for keys the reference lacks), waits until the pipeline
// applied them, and compares those keys again. Until a flip the reference
// is the monolith table and the rows go to the mapping's topic; after it,
// the service table (PostgreSQL) and the reverse topic, which the reverse
// flow applies to the monolith under the mapping's conflict policy.
// repairSide is the side whose rows a repair publishes: the owner.
func repairSide(owner string) string {
	if owner == postgres.OwnerService {
		return "service"
	}
	return "monolith"
}

// losingSide is the side that gives way under policy ("" under
// last-writer-wins).
func losingSide(policy pipeline.Conflict) string {
	switch policy {
	case pipeline.MonolithWins:
		return "service"
	case pipeline.ServiceWins:
		return "monolith"
	}
	return ""
}

func repairMapping(ctx context.Context, cfg *daemon.Config, m *registry.Mapping, storeURL string, vcfg verify.Config, rep *verify.Report, stderr io.Writer) (*verify.Report, error) {
	if len(cfg.KafkaBrokers) == 0 {
		return nil, errors.New("verify --repair publishes to Kafka: set SCOOP_KAFKA_BROKERS")
	}
	transport, err := cfg.KafkaSecurity().Transport()
	if err != nil {
		return nil, err
	}
	producer, err := kafka.NewProducer(kafka.Config{Transport: transport, Brokers: cfg.KafkaBrokers,
		Partitions: cfg.TopicPartitions, ReplicationFactor: cfg.TopicReplication,
		MaxMessageBytes: cfg.KafkaMaxMessage, DLQTopic: cfg.TopicPrefix + ".dlq"})
	if err != nil {
		return nil, err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		producer.Close(c)
	}()
	s, t := m.SourceTable()
	rc := postgres.RepublishConfig{URL: cfg.SourceURL, Table: postgres.TableName{Schema: s, Name: t}, Topic: m.TopicName(cfg.TopicPrefix),
		Encoding: schema.EncoderConfig{Name: cfg.TopicPrefix, Version: version, Schemas: cfg.EventSchemas}}
	keys, from := verify.RepairKeys(&m.Mapping, rep.Diffs), "the monolith's"
	if vcfg.ServiceOwns {
		// The reverse source's table and topic (internal/daemon/reverse.go).
		rc.URL, rc.Table, rc.Topic = storeURL, postgres.TableName{Schema: "public", Name: m.TargetTable()}, pipeline.ReverseTopic(cfg.TopicPrefix, &m.Mapping)
		keys, from = verify.ServiceKeys(rep.Diffs), "the service's"
	}
	upserts, deletes, err := postgres.Republish(ctx, rc, keys, producer.Publish)
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", m.Name, err)
	}
	fmt.Fprintf(stderr, "verify %s: republished %d of %s rows and %d deletes to %s; verifying them again\n", m.Name, upserts, from, deletes, rc.Topic)
	again, err := verify.Recheck(ctx, vcfg, rep)
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", m.Name, err)
	}
	again.Repaired = upserts + deletes
	return again, nil
}
