// Command scoop keeps a PostgreSQL monolith and the stores of the services
// carved out of it consistent: logical replication -> Kafka -> service stores.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/scoop-cdc/scoop/internal/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `scoop keeps a PostgreSQL monolith and its services' stores in sync.

Usage:
  scoop <command> [flags]

Commands:
  run                                 start the daemon: snapshot and stream mapped tables
                                      into Kafka and apply them to the service stores
  mappings apply -f FILE [--dry-run]  make the registry match FILE (add, change, remove)
  mappings list                       list the registered mappings
  mappings describe NAME              show one mapping, its topic and consumer group
  mappings remove NAME                remove one mapping
  mappings flip NAME [--back] [--timeout D]
                                      hand a direction-both table to the service (fence the
                                      monolith's copy), or back (docs/runbook.md)
  replay NAME --from-offset N [--partition P]
  replay NAME --from-time RFC3339
  replay NAME --snapshot              re-apply a mapping's history, or a fresh copy of its
                                      table, into its store while the others keep running
  status [--json] [--watch [--interval D]]
                                      ask the running daemon (SCOOP_ADMIN_ADDR) how it is:
                                      slot, readiness and one line per mapping
  verify NAME [--repair] [--json] [--max-rows-per-second N]
  verify --all [...]                  compare a mapping's target with its monolith table;
                                      exit 0 equal, 1 different, 2 error (docs/verify.md)
  version                             print the version
  help                                show this help

Configuration comes from the environment (SCOOP_*); see README.md.
`

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version", "--version":
		fmt.Fprintf(stdout, "scoop %s\n", version)
		return 0
	case "run":
		// A soft memory limit keeps the heap near what scoop holds (bounded
		// batches and buffers) instead of twice that; GOMEMLIMIT overrides it.
		// It bounds the Go runtime's memory, not the process's: the binary's
		// mapped code and data add about 20 MiB to the resident set, so 72 MiB
		// keeps a scoop run near 90 MiB in every phase of make bench.
		if os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(72 << 20)
		}
		cfg, err := loadConfig()
		if err != nil {
			fmt.Fprintf(stderr, "scoop: %v\n", err)
			return 1
		}
		sigs := make(chan os.Signal, 2)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		finished := make(chan struct{})
		defer close(finished)
		go shutdown(sigs, stop, cfg.DrainTimeout, finished, stderr, os.Exit)
		if err := daemon.Run(ctx, cfg, version); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(stderr, "scoop: %v\n", err)
			return 1
		}
		return 0
	case "verify":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return verifyCommand(ctx, args[1:], stdout, stderr)
	case "mappings", "replay", "status":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		var err error
		switch args[0] {
		case "mappings":
			err = mappingsCommand(ctx, args[1:], stdout)
		case "replay":
			err = replayCommand(ctx, args[1:], stdout)
		default:
			err = statusCommand(ctx, args[1:], stdout)
		}
		if err != nil {
			fmt.Fprintf(stderr, "scoop: %v\n", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "scoop: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// shutdown stops the daemon (stop) at the first SIGTERM or SIGINT, then
// leaves at once (exit 1) at a second one, or when the daemon has not
// finished within drain (SCOOP_DRAIN_TIMEOUT). Nothing is lost either way:
// positions only move after delivery.
func shutdown(sigs <-chan os.Signal, stop func(), drain time.Duration, finished <-chan struct{}, stderr io.Writer, exit func(int)) {
	select {
	case <-finished:
		return
	case <-sigs:
	}
	stop()
	select {
	case <-finished:
	case s := <-sigs:
		fmt.Fprintf(stderr, "scoop: second %s; exiting now\n", s)
		exit(1)
	case <-time.After(drain):
		fmt.Fprintf(stderr, "scoop: shutdown took more than %s (SCOOP_DRAIN_TIMEOUT); exiting\n", drain)
		exit(1)
	}
}
