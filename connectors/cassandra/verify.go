package cassandra

import (
	"encoding/json"
	"time"

	"github.com/gocql/gocql"

	"github.com/scoop-cdc/scoop/pipeline"
)

// Value converts an event's JSON value for a column exactly as the sink
// writes it (nil for NULL), so that a verifier can compare what the store
// holds with what it would hold.
func Value(col pipeline.Column, raw json.RawMessage) (any, error) { return cqlValue(col, raw) }

// Connect opens a session to the store of a cassandra:// URL (for reading:
// verify), with the sink's settings.
func Connect(cfg SinkConfig) (*gocql.Session, Store, error) {
	st, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, st, err
	}
	cluster := gocql.NewCluster(st.Hosts...)
	cluster.Port = st.Port
	cluster.Consistency = gocql.LocalQuorum
	cluster.Timeout = 10 * time.Second
	cluster.ConnectTimeout = 10 * time.Second
	cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	if cfg.TLS {
		cluster.SslOpts = &gocql.SslOptions{CaPath: cfg.CAFile, EnableHostVerification: true}
	}
	if cfg.Username != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password}
	}
	s, err := cluster.CreateSession()
	if err != nil {
		return nil, st, err
	}
	return s, st, nil
}
