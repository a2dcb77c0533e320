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
	if *repair {
		owners, err := postgres.Owners(ctx, cfg.SourceURL, cfg.Slot)
		if err != nil {
			return fail(err)
		}
		for _, m := range mappings {
			if owners[m.Name].Owner == postgres.OwnerService {
				return fail(fmt.Errorf("verify %s --repair: the mapping was flipped to the service, whose copy is now the table's truth; repair re-sends the monolith's rows and would overwrite the service's writes (flip back first with `scoop mappings flip %s --back`, or verify without --repair)", m.Name, m.Name))
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
		vcfg := verify.Config{
			SourceURL: cfg.SourceURL, StoreURL: url, Mapping: m.Mapping,
			Cassandra: cassandra.SinkConfig{TLS: cfg.CassandraTLS, CAFile: cfg.CassandraCAFile,
				Username: cfg.CassandraUsername, Password: cfg.CassandraPassword},
			ChunkRows: *chunk, MaxRowsPerSecond: *rate, Progress: progress, ProgressBar: onTerminal,
		}
		if len(cfg.KafkaBrokers) > 0 {
			vcfg.Settle = settler(cfg, &m, *settle)
		}
		rep, err := verify.Run(ctx, vcfg)
		if err != nil {
			return fail(err)
		}
		if *repair && !rep.Equal() {
			if rep, err = repairMapping(ctx, cfg, &m, vcfg, rep, stderr); err != nil {
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
	fmt.Fprintf(w, "verify %s: %s -> %s.%s: %s: %d rows, %d missing, %d extra, %d different (%.1fs)\n",
		r.Mapping, r.Source, r.Store, r.Target, state, r.Rows, r.Missing, r.Extra, r.Different, r.Seconds)
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
		conn, err := postgres.Connect(ctx, cfg.SourceURL)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		for {
			var passed *bool
			err := conn.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, cfg.Slot, lsn).Scan(&passed)
			if err != nil {
				return fmt.Errorf("slot %s (SCOOP_SLOT) does not exist or cannot be read: is scoop run up? (%w)", cfg.Slot, err)
			}
			if passed != nil && *passed {
				break
			}
			if err := pause(ctx, fmt.Sprintf("the slot %s to confirm %s (is scoop run up?)", cfg.Slot, lsn)); err != nil {
				return err
			}
		}
		admin, err := kafka.NewAdmin(cfg.KafkaBrokers, cfg.KafkaSecurity())
		if err != nil {
			return err
		}
		topic, group := m.TopicName(cfg.TopicPrefix), m.GroupID(cfg.TopicPrefix)
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

// repairMapping publishes the differing rows again (postgres.Republish:
// current rows as snapshot reads, deletes and tombstones for extra keys),
// waits until the pipeline applied them, and compares those keys again.
func repairMapping(ctx context.Context, cfg *daemon.Config, m *registry.Mapping, vcfg verify.Config, rep *verify.Report, stderr io.Writer) (*verify.Report, error) {
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
	upserts, deletes, err := postgres.Republish(ctx, postgres.RepublishConfig{URL: cfg.SourceURL,
		Table: postgres.TableName{Schema: s, Name: t}, Topic: m.TopicName(cfg.TopicPrefix),
		Encoding: schema.EncoderConfig{Name: cfg.TopicPrefix, Version: version, Schemas: cfg.EventSchemas}},
		verify.RepairKeys(&m.Mapping, rep.Diffs), producer.Publish)
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", m.Name, err)
	}
	fmt.Fprintf(stderr, "verify %s: republished %d rows and %d deletes; verifying them again\n", m.Name, upserts, deletes)
	again, err := verify.Recheck(ctx, vcfg, rep)
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", m.Name, err)
	}
	again.Repaired = upserts + deletes
	return again, nil
}
