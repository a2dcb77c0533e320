package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestConfigErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SCOOP_LOG_LEVEL": "loud"}, `SCOOP_LOG_LEVEL="loud": use debug, info, warn or error`},
		{map[string]string{"SCOOP_LOG_FORMAT": "xml"}, `SCOOP_LOG_FORMAT="xml": use text or json`},
		{map[string]string{"SCOOP_TOPIC_PARTITIONS": "0"}, `SCOOP_TOPIC_PARTITIONS=0: must be at least 1`},
		{map[string]string{"SCOOP_TOPIC_PARTITIONS": "many"}, `SCOOP_TOPIC_PARTITIONS="many": not a valid int`},
		{map[string]string{"SCOOP_HEARTBEAT_INTERVAL": "often"}, `SCOOP_HEARTBEAT_INTERVAL="often": not a valid time.Duration`},
		{map[string]string{"SCOOP_SOURCE_URL": "mysql://x"}, `SCOOP_SOURCE_URL: not a postgres:// URL`},
		{map[string]string{"SCOOP_STORE_ORDERS_URL": "cassandra://127.0.0.1:9042"}, `SCOOP_STORE_ORDERS_URL: a Cassandra store needs a keyspace: cassandra://host:9042/keyspace`},
		{map[string]string{"SCOOP_PG_SINK_METHOD": "merge"}, `SCOOP_PG_SINK_METHOD="merge": use copy or insert`},
		{map[string]string{"SCOOP_SINK_BATCH": "0"}, `SCOOP_SINK_BATCH=0: must be at least 1`},
		{map[string]string{"SCOOP_DRAIN_TIMEOUT": "0s"}, `SCOOP_DRAIN_TIMEOUT=0s: must be positive, e.g. 15s`},
		{map[string]string{"SCOOP_KAFKA_SASL_MECHANISM": "kerberos", "SCOOP_KAFKA_USERNAME": "u"}, `kafka: SCOOP_KAFKA_SASL_MECHANISM="kerberos": use plain, scram-sha-256 or scram-sha-512`},
		{map[string]string{"SCOOP_KAFKA_SASL_MECHANISM": "scram-sha-512"}, `kafka: SCOOP_KAFKA_SASL_MECHANISM=scram-sha-512 needs SCOOP_KAFKA_USERNAME and SCOOP_KAFKA_PASSWORD`},
		{map[string]string{"SCOOP_KAFKA_TLS": "true", "SCOOP_KAFKA_CA_FILE": "/nonexistent/ca.pem"}, `kafka: SCOOP_KAFKA_CA_FILE: open /nonexistent/ca.pem: no such file or directory`},
		{map[string]string{"SCOOP_KAFKA_CA_FILE": "/etc/hostname"}, `kafka: SCOOP_KAFKA_CA_FILE is set but SCOOP_KAFKA_TLS is not true`},
		{map[string]string{"SCOOP_KAFKA_TLS": "true", "SCOOP_KAFKA_CA_FILE": "/etc/hostname"}, `kafka: SCOOP_KAFKA_CA_FILE /etc/hostname holds no PEM certificate`},
		{map[string]string{"SCOOP_CASSANDRA_CA_FILE": "/etc/ssl/x.pem"}, `SCOOP_CASSANDRA_CA_FILE is set but SCOOP_CASSANDRA_TLS is not true`},
		{map[string]string{"SCOOP_STORE_X_URL": "redis://h"}, `SCOOP_STORE_X_URL: scheme "redis" is not supported; use postgres:// or cassandra://`},
		{map[string]string{"SCOOP_STALL_TIMEOUT": "15s"}, `SCOOP_STALL_TIMEOUT=15s: must be more than twice SCOOP_HEARTBEAT_INTERVAL (10s) and more than SCOOP_MONITOR_INTERVAL (5s): an idle source confirms a position once per heartbeat`},
		{map[string]string{"SCOOP_STALL_TIMEOUT": "1m", "SCOOP_MONITOR_INTERVAL": "2m"}, `SCOOP_STALL_TIMEOUT=1m0s: must be more than twice SCOOP_HEARTBEAT_INTERVAL (10s) and more than SCOOP_MONITOR_INTERVAL (2m0s)`},
		{map[string]string{"SCOOP_MONITOR_INTERVAL": "1ms"}, `SCOOP_MONITOR_INTERVAL=1ms: must be at least 100ms`},
		{map[string]string{"SCOOP_MAX_RETAINED_WAL_MB": "-1"}, `SCOOP_MAX_RETAINED_WAL_MB=-1: must be 0 (no limit) or more`},
	}
	for _, c := range cases {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		_, err := loadConfig()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want it to contain %q", c.env, err, c.want)
		}
		for k := range c.env {
			t.Setenv(k, "")
		}
	}
}

func TestRunRequiresSourceAndBrokers(t *testing.T) {
	t.Setenv("SCOOP_SOURCE_URL", "")
	t.Setenv("SCOOP_KAFKA_BROKERS", "")
	var out, errOut bytes.Buffer
	if code := runMain([]string{"run"}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d", code)
	}
	want := "scoop: SCOOP_SOURCE_URL is not set: give the monolith's URL, e.g. postgres://scoop@127.0.0.1:5432/monolith\nSCOOP_KAFKA_BROKERS is not set: give a comma-separated list, e.g. 127.0.0.1:9092\n"
	if errOut.String() != want {
		t.Fatalf("got %q", errOut.String())
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runMain([]string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "mappings apply -f FILE") || !strings.Contains(out.String(), "replay NAME --snapshot") {
		t.Fatalf("help: %d %s", code, out.String())
	}
	out.Reset()
	if code := runMain([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "scoop ") {
		t.Fatalf("version: %d %s", code, out.String())
	}
	if code := runMain([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown: %d %s", code, errOut.String())
	}
}

// TestSIGTERMExitsQuickly: scoop run stops within a few seconds of SIGTERM
// and exits 0.
func TestSIGTERMExitsQuickly(t *testing.T) {
	e := newE2E(t, "mappings: []\n")
	d := startProc(t, e.env)
	waitReady(t, d)
	start := timeNow()
	if err := d.cmd.Process.Signal(sigterm); err != nil {
		t.Fatal(err)
	}
	err := d.cmd.Wait()
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, d.logs())
	}
	if took := timeNow().Sub(start); took > 5e9 {
		t.Fatalf("took %s to stop", took)
	}
	if !strings.Contains(d.logs(), "scoop stopped") {
		t.Fatalf("no clean stop logged:\n%s", d.logs())
	}
}

// The Cassandra settings come from Config like every other: "1" is true for
// SCOOP_CASSANDRA_TLS as for every boolean, and the credentials are read.
func TestCassandraSettingsFromConfig(t *testing.T) {
	t.Setenv("SCOOP_CASSANDRA_TLS", "1")
	t.Setenv("SCOOP_CASSANDRA_USERNAME", "svc")
	t.Setenv("SCOOP_CASSANDRA_PASSWORD", "pw")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.CassandraTLS || cfg.CassandraUsername != "svc" || cfg.CassandraPassword != "pw" {
		t.Fatalf("got TLS=%v user=%q password set=%v", cfg.CassandraTLS, cfg.CassandraUsername, cfg.CassandraPassword != "")
	}
}
