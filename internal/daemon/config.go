package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/scoop-cdc/scoop/connectors/kafka"
)

// Config is scoop's whole configuration, read from the environment only.
type Config struct {
	SourceURL         string        `env:"SCOOP_SOURCE_URL"`
	KafkaBrokers      []string      `env:"SCOOP_KAFKA_BROKERS" envSeparator:","`
	TopicPrefix       string        `env:"SCOOP_TOPIC_PREFIX" envDefault:"scoop"`
	TopicPartitions   int           `env:"SCOOP_TOPIC_PARTITIONS" envDefault:"3"`
	TopicReplication  int           `env:"SCOOP_TOPIC_REPLICATION_FACTOR" envDefault:"-1"`
	KafkaMaxMessage   int           `env:"SCOOP_KAFKA_MAX_MESSAGE_BYTES" envDefault:"1000000"`
	KafkaTLS          bool          `env:"SCOOP_KAFKA_TLS" envDefault:"false"`
	KafkaCAFile       string        `env:"SCOOP_KAFKA_CA_FILE"`
	KafkaSASL         string        `env:"SCOOP_KAFKA_SASL_MECHANISM"`
	KafkaUsername     string        `env:"SCOOP_KAFKA_USERNAME"`
	KafkaPassword     string        `env:"SCOOP_KAFKA_PASSWORD"`
	CassandraTLS      bool          `env:"SCOOP_CASSANDRA_TLS" envDefault:"false"`
	CassandraCAFile   string        `env:"SCOOP_CASSANDRA_CA_FILE"`
	CassandraUsername string        `env:"SCOOP_CASSANDRA_USERNAME"`
	CassandraPassword string        `env:"SCOOP_CASSANDRA_PASSWORD"`
	Slot              string        `env:"SCOOP_SLOT" envDefault:"scoop"`
	Publication       string        `env:"SCOOP_PUBLICATION" envDefault:"scoop"`
	MappingsFile      string        `env:"SCOOP_MAPPINGS_FILE"`
	EventSchemas      bool          `env:"SCOOP_EVENT_SCHEMAS" envDefault:"false"`
	HeartbeatInterval time.Duration `env:"SCOOP_HEARTBEAT_INTERVAL" envDefault:"10s"`
	// HeartbeatRecords: publish Debezium's heartbeat records (docs/events.md).
	HeartbeatRecords  bool          `env:"SCOOP_HEARTBEAT_RECORDS" envDefault:"false"`
	SnapshotWorkers   int           `env:"SCOOP_SNAPSHOT_WORKERS" envDefault:"2"`
	SnapshotChunkRows int           `env:"SCOOP_SNAPSHOT_CHUNK_ROWS" envDefault:"10000"`
	PGSinkMethod      string        `env:"SCOOP_PG_SINK_METHOD" envDefault:"copy"`
	SinkBatch         int           `env:"SCOOP_SINK_BATCH" envDefault:"5000"`
	SinkBatchMB       int           `env:"SCOOP_SINK_BATCH_MB" envDefault:"8"`
	BufferMB          int           `env:"SCOOP_BUFFER_MB" envDefault:"16"`
	CassandraInFlight int           `env:"SCOOP_CASSANDRA_MAX_IN_FLIGHT" envDefault:"128"`
	MonitorInterval   time.Duration `env:"SCOOP_MONITOR_INTERVAL" envDefault:"5s"`
	StallTimeout      time.Duration `env:"SCOOP_STALL_TIMEOUT" envDefault:"2m"`
	MaxRetainedWALMB  int           `env:"SCOOP_MAX_RETAINED_WAL_MB" envDefault:"0"`
	DrainTimeout      time.Duration `env:"SCOOP_DRAIN_TIMEOUT" envDefault:"15s"`
	AdminAddr         string        `env:"SCOOP_ADMIN_ADDR" envDefault:"127.0.0.1:7070"`
	AdminToken        string        `env:"SCOOP_ADMIN_TOKEN"`
	LogLevel          string        `env:"SCOOP_LOG_LEVEL" envDefault:"info"`
	LogFormat         string        `env:"SCOOP_LOG_FORMAT" envDefault:"text"`

	// Stores maps a lower-case store name to its URL, from every
	// SCOOP_STORE_<NAME>_URL variable.
	Stores map[string]string `env:"-"`

	// KafkaAllowPlaintextAuth accepts SASL PLAIN without TLS (the password
	// then crosses the network as it is).
	KafkaAllowPlaintextAuth bool `env:"SCOOP_KAFKA_ALLOW_PLAINTEXT_AUTH" envDefault:"false"`
	// AdminPprof serves /debug/pprof (goroutine dumps, profiles) on the
	// admin server, behind SCOOP_ADMIN_TOKEN when one is set.
	AdminPprof bool `env:"SCOOP_ADMIN_PPROF" envDefault:"false"`
}

// Validate checks every setting; each error names the variable and the fix.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("SCOOP_LOG_LEVEL=%q: use debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("SCOOP_LOG_FORMAT=%q: use text or json", c.LogFormat)
	}
	if c.TopicPrefix == "" || strings.ContainsAny(c.TopicPrefix, " /\\") {
		bad("SCOOP_TOPIC_PREFIX=%q: use letters, digits, '.', '_' or '-'", c.TopicPrefix)
	}
	if c.PGSinkMethod != "copy" && c.PGSinkMethod != "insert" {
		bad("SCOOP_PG_SINK_METHOD=%q: use copy or insert", c.PGSinkMethod)
	}
	if c.DrainTimeout <= 0 {
		bad("SCOOP_DRAIN_TIMEOUT=%s: must be positive, e.g. 15s", c.DrainTimeout)
	}
	if c.BufferMB < 1 {
		bad("SCOOP_BUFFER_MB=%d: must be at least 1", c.BufferMB)
	}
	if c.SinkBatchMB < 1 {
		bad("SCOOP_SINK_BATCH_MB=%d: must be at least 1", c.SinkBatchMB)
	}
	if c.SinkBatch < 1 {
		bad("SCOOP_SINK_BATCH=%d: must be at least 1", c.SinkBatch)
	}
	if c.CassandraInFlight < 1 {
		bad("SCOOP_CASSANDRA_MAX_IN_FLIGHT=%d: must be at least 1", c.CassandraInFlight)
	}
	if c.TopicPartitions < 1 {
		bad("SCOOP_TOPIC_PARTITIONS=%d: must be at least 1", c.TopicPartitions)
	}
	if c.MonitorInterval < 100*time.Millisecond {
		bad("SCOOP_MONITOR_INTERVAL=%s: must be at least 100ms", c.MonitorInterval)
	}
	if c.StallTimeout <= 2*c.HeartbeatInterval || c.StallTimeout <= c.MonitorInterval {
		bad("SCOOP_STALL_TIMEOUT=%s: must be more than twice SCOOP_HEARTBEAT_INTERVAL (%s) and more than SCOOP_MONITOR_INTERVAL (%s): an idle source confirms a position once per heartbeat", c.StallTimeout, c.HeartbeatInterval, c.MonitorInterval)
	}
	if c.MaxRetainedWALMB < 0 {
		bad("SCOOP_MAX_RETAINED_WAL_MB=%d: must be 0 (no limit) or more", c.MaxRetainedWALMB)
	}
	if _, err := c.KafkaSecurity().Transport(); err != nil {
		errs = append(errs, err)
	}
	if c.AdminToken == "" && !loopback(c.AdminAddr) {
		bad("SCOOP_ADMIN_ADDR=%s is reachable from other hosts and SCOOP_ADMIN_TOKEN is not set: set a token (the status page, /status and /debug/pprof then need it) or listen on 127.0.0.1", c.AdminAddr)
	}
	if c.CassandraCAFile != "" && !c.CassandraTLS {
		bad("SCOOP_CASSANDRA_CA_FILE is set but SCOOP_CASSANDRA_TLS is not true")
	}
	if c.SourceURL != "" {
		if u, err := url.Parse(c.SourceURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			bad("SCOOP_SOURCE_URL: not a postgres:// URL")
		}
	}
	for name, raw := range c.Stores {
		u, err := url.Parse(raw)
		if err != nil {
			bad("SCOOP_STORE_%s_URL=%q does not parse as a URL: %s", strings.ToUpper(name), RedactURL(raw), urlProblem(err))
			continue
		}
		k, ok := storeKinds[storeKind(raw)]
		if !ok {
			bad("SCOOP_STORE_%s_URL: scheme %q is not supported; use %s", strings.ToUpper(name), u.Scheme, schemeList())
			continue
		}
		if err := k.check(u); err != nil {
			bad("SCOOP_STORE_%s_URL: %v", strings.ToUpper(name), err)
		}
	}
	return errors.Join(errs...)
}

// RequireRun checks what `scoop run` needs beyond Validate.
func (c *Config) RequireRun() error {
	var errs []error
	if c.SourceURL == "" {
		errs = append(errs, errors.New("SCOOP_SOURCE_URL is not set: give the monolith's URL, e.g. postgres://scoop@127.0.0.1:5432/monolith"))
	}
	if len(c.KafkaBrokers) == 0 {
		errs = append(errs, errors.New("SCOOP_KAFKA_BROKERS is not set: give a comma-separated list, e.g. 127.0.0.1:9092"))
	}
	return errors.Join(errs...)
}

// Logger is the structured logger the settings ask for.
func (c *Config) Logger() *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// KafkaSecurity is the TLS and SASL setting for Kafka.
func (c *Config) KafkaSecurity() kafka.Security {
	return kafka.Security{TLS: c.KafkaTLS, CAFile: c.KafkaCAFile, Mechanism: c.KafkaSASL, Username: c.KafkaUsername, Password: c.KafkaPassword,
		AllowPlaintextAuth: c.KafkaAllowPlaintextAuth}
}

// RedactURL hides the password of a URL, also of one that does not parse
// (everything between the scheme and the last '@' but the user name, then).
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	at := strings.LastIndex(rest, "@")
	if !ok || at < 0 {
		return raw
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return raw
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// urlProblem says why a URL does not parse without quoting it: url.Parse's
// errors repeat the URL, and some the part of it that is wrong, which may
// be a piece of the password.
func urlProblem(err error) string {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return "invalid URL"
	}
	var esc url.EscapeError
	var host url.InvalidHostError
	switch {
	case errors.As(ue.Err, &esc):
		return "an invalid %-escape"
	case errors.As(ue.Err, &host):
		return "an invalid character in the host"
	case strings.HasPrefix(ue.Err.Error(), "invalid port"):
		// What url.Parse takes for a port may be the start of a password
		// holding a '/' that is not %-encoded.
		return "an invalid port (a '/', '@' or ':' in the password must be %-encoded)"
	}
	return ue.Err.Error()
}

// loopback reports whether a listen address takes connections from this
// host only (an empty host listens on every interface).
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Warning is a setting that works but is risky.
type Warning struct{ Setting, Message, Risk string }

// Warnings lists the risky settings: PostgreSQL URLs without sslmode,
// whose default (prefer) neither verifies the server nor insists on TLS.
func (c *Config) Warnings() []Warning {
	var ws []Warning
	check := func(setting, raw string) {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Query().Has("sslmode") || os.Getenv("PGSSLMODE") != "" {
			return
		}
		ws = append(ws, Warning{Setting: setting, Message: "PostgreSQL URL without sslmode",
			Risk: "the default (prefer) falls back to plaintext and does not verify the server's certificate, so the password and the data can be read or changed on the way; set sslmode=verify-full and sslrootcert (or sslmode=disable to say plaintext is meant)"})
	}
	check("SCOOP_SOURCE_URL", c.SourceURL)
	names := make([]string, 0, len(c.Stores))
	for name := range c.Stores {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		check("SCOOP_STORE_"+strings.ToUpper(name)+"_URL", c.Stores[name])
	}
	return ws
}
