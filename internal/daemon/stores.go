package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/scoop-cdc/scoop/connectors/cassandra"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/pipeline"
)

// sinkSpec is what opening one mapping's sink needs besides the settings.
type sinkSpec struct {
	url, mapping, group, topic string
	target                     pipeline.Target
	log                        *slog.Logger
	// both: the mapping has direction both; a PostgreSQL store then
	// applies under the conflict policy (Cassandra's write timestamps are
	// the policy already).
	both   bool
	policy pipeline.Conflict
}

// kind is one kind of service store: the URL schemes that name it, what a
// URL of it must hold (checked by Config.Validate), and how a mapping's
// sink is opened with the typed settings. Adding a store kind is one entry
// here plus its connector and the conformance suite.
type kind struct {
	schemes []string
	check   func(u *url.URL) error
	open    func(ctx context.Context, cfg *Config, s sinkSpec) (pipeline.Sink, error)
}

// storeKinds is the visible map from store kind to its constructor.
var storeKinds = map[string]kind{
	"postgres": {
		schemes: []string{"postgres", "postgresql"},
		check:   func(*url.URL) error { return nil },
		open: func(ctx context.Context, cfg *Config, s sinkSpec) (pipeline.Sink, error) {
			sc := postgres.SinkConfig{URL: s.url, Mapping: s.mapping, Group: s.group, Topic: s.topic,
				Target: s.target, Logger: s.log, Method: cfg.PGSinkMethod}
			if s.both {
				sc.Conflict = &postgres.Conflict{Side: postgres.SideService, Policy: s.policy, Tag: pipeline.ForwardOrigin(&pipeline.Mapping{Name: s.mapping})}
			}
			return postgres.NewSink(ctx, sc)
		},
	},
	"cassandra": {
		schemes: []string{"cassandra"},
		check: func(u *url.URL) error {
			if strings.Trim(u.Path, "/") == "" {
				return fmt.Errorf("a Cassandra store needs a keyspace: cassandra://host:9042/keyspace")
			}
			// The sink's own checks, on the URL without its password
			// (their errors quote the URL).
			_, err := cassandra.ParseURL(u.Redacted())
			return err
		},
		open: func(ctx context.Context, cfg *Config, s sinkSpec) (pipeline.Sink, error) {
			sink, err := cassandra.NewSink(ctx, cassandra.SinkConfig{URL: s.url, Mapping: s.mapping, Target: s.target, Logger: s.log,
				MaxInFlight: cfg.CassandraInFlight, TLS: cfg.CassandraTLS, CAFile: cfg.CassandraCAFile,
				Username: cfg.CassandraUsername, Password: cfg.CassandraPassword})
			if err != nil {
				return nil, cassandra.ExplainConnect(err, cfg.CassandraTLS)
			}
			return sink, nil
		},
	},
}

// storeKind names the kind of store a URL points at ("" when none).
func storeKind(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	for name, k := range storeKinds {
		for _, s := range k.schemes {
			if u.Scheme == s {
				return name
			}
		}
	}
	return ""
}

// schemeList names the supported URL schemes, for error messages.
func schemeList() string {
	var out []string
	for _, name := range []string{"postgres", "cassandra"} {
		out = append(out, name+"://")
	}
	return strings.Join(out, " or ")
}
