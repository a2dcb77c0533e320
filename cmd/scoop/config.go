package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"

	"github.com/scoop-cdc/scoop/internal/daemon"
)

// loadConfig parses and validates the environment. Every error names the
// variable and what to set it to.
func loadConfig() (*daemon.Config, error) {
	var cfg daemon.Config
	if err := env.Parse(&cfg); err != nil {
		return nil, explainEnvError(err)
	}
	cfg.Stores = map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SCOOP_STORE_") && strings.HasSuffix(k, "_URL") && len(k) > len("SCOOP_STORE__URL") {
			name := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(k, "SCOOP_STORE_"), "_URL"))
			cfg.Stores[name] = v
		}
	}
	return &cfg, cfg.Validate()
}

// explainEnvError rewrites caarlos0/env's errors, which name Go fields, so
// that each names the variable and the bad value's problem.
func explainEnvError(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("configuration: %w", err)
	}
	t := reflect.TypeOf(daemon.Config{})
	var errs []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := t.FieldByName(pe.Name); ok {
				name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
				errs = append(errs, fmt.Errorf("%s=%q: not a valid %s (%v)", name, os.Getenv(name), pe.Type, pe.Err))
				continue
			}
		}
		errs = append(errs, e)
	}
	return fmt.Errorf("configuration: %w", errors.Join(errs...))
}
