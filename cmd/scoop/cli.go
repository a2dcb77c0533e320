package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/registry"
	"github.com/scoop-cdc/scoop/pipeline"
)

// The mappings commands talk to the registry directly (tables in the
// monolith, schema scoop): they need SCOOP_SOURCE_URL and SCOOP_SLOT, and
// the store URLs for validation. Running daemons pick the change up within
// a second.
func mappingsCommand(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: scoop mappings apply -f FILE [--dry-run] | list | describe NAME | remove NAME | flip NAME [--back] [--timeout D]")
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if cfg.SourceURL == "" {
		return errors.New("SCOOP_SOURCE_URL is not set: the mapping registry lives in the monolith database")
	}
	reg := postgres.NewRegistry(cfg.SourceURL, cfg.Slot)
	switch args[0] {
	case "apply":
		fs := flag.NewFlagSet("scoop mappings apply", flag.ContinueOnError)
		fs.SetOutput(stdout)
		file := fs.String("f", "", "mappings YAML file")
		dry := fs.Bool("dry-run", false, "print the plan, change nothing")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *file == "" {
			return errors.New("scoop mappings apply: -f FILE is required")
		}
		f, err := pipeline.LoadFile(*file, cfg.Stores)
		if err != nil {
			return err
		}
		if err := pipeline.CheckTopics(cfg.TopicPrefix, f.Mappings); err != nil {
			return fmt.Errorf("%s: %w", *file, err)
		}
		if *dry {
			current, _, err := reg.List(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, "plan (dry run, nothing changed):")
			for _, st := range registry.Plan(current, f) {
				fmt.Fprintln(stdout, "  "+st.String())
			}
			return nil
		}
		steps, err := reg.Apply(ctx, f)
		if err != nil {
			return fmt.Errorf("%s: %w", *file, err)
		}
		for _, st := range steps {
			fmt.Fprintln(stdout, st.String())
		}
		return nil
	case "list":
		ms, _, err := reg.List(ctx)
		if err != nil {
			return err
		}
		owners, err := postgres.Owners(ctx, cfg.SourceURL, cfg.Slot)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-20s %-28s %-12s %-20s %-10s %s\n", "NAME", "SOURCE", "STORE", "TARGET", "GENERATION", "OWNER")
		for _, m := range ms {
			fmt.Fprintf(stdout, "%-20s %-28s %-12s %-20s %-10d %s\n", m.Name, m.Source, m.Store, m.TargetTable(), m.Generation, ownerOf(owners, m.Name))
		}
		return nil
	case "describe":
		if len(args) != 2 {
			return errors.New("usage: scoop mappings describe NAME")
		}
		m, err := reg.Get(ctx, args[1])
		if err != nil {
			return err
		}
		owners, err := postgres.Owners(ctx, cfg.SourceURL, cfg.Slot)
		if err != nil {
			return err
		}
		out := map[string]any{"mapping": m.Mapping, "generation": m.Generation, "updated_at": m.UpdatedAt,
			"topic": m.TopicName(cfg.TopicPrefix), "consumer_group": m.GroupID(cfg.TopicPrefix), "owner": ownerOf(owners, m.Name)}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "flip":
		return flipCommand(ctx, cfg, reg, args[1:], stdout)
	case "remove":
		if len(args) != 2 {
			return errors.New("usage: scoop mappings remove NAME")
		}
		if err := reg.Remove(ctx, args[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s\n", args[1])
		return nil
	}
	return fmt.Errorf("scoop mappings: unknown subcommand %q (apply, list, describe, remove, flip)", args[0])
}

// ownerOf is the side that owns a mapping's table: the monolith unless
// `scoop mappings flip` handed it to the service.
func ownerOf(owners map[string]postgres.Ownership, name string) string {
	if o, ok := owners[name]; ok {
		return o.Owner
	}
	return postgres.OwnerMonolith
}
