package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/cutover"
	"github.com/scoop-cdc/scoop/internal/daemon"
)

// flipCommand is `scoop mappings flip NAME [--back] [--timeout D]`
// (internal/cutover, docs/runbook.md).
func flipCommand(ctx context.Context, cfg *daemon.Config, reg *postgres.Registry, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("scoop mappings flip", flag.ContinueOnError)
	fs.SetOutput(stdout)
	back := fs.Bool("back", false, "hand the table back to the monolith")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for scoop to apply what was written before the fence")
	// NAME may come before or after the flags.
	var name string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
		fs.Parse(fs.Args()[1:])
	}
	if name == "" || fs.NArg() > 0 {
		return errors.New("usage: scoop mappings flip NAME [--back] [--timeout D]")
	}
	if *timeout <= 0 {
		return fmt.Errorf("scoop mappings flip: --timeout=%s: must be positive, e.g. 5m", *timeout)
	}
	if len(cfg.KafkaBrokers) == 0 {
		return errors.New("SCOOP_KAFKA_BROKERS is not set: the flip waits for the mapping's consumer groups in Kafka")
	}
	admin, err := kafka.NewAdmin(cfg.KafkaBrokers, cfg.KafkaSecurity())
	if err != nil {
		return err
	}
	return cutover.Flip(ctx, cutover.Config{
		SourceURL: cfg.SourceURL, Slot: cfg.Slot, TopicPrefix: cfg.TopicPrefix, Stores: cfg.Stores,
		Mappings: reg, Offsets: admin, Timeout: *timeout, Out: stdout,
	}, name, *back)
}
