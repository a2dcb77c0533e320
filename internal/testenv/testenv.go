// Package testenv gives integration tests the real PostgreSQL, Kafka and
// Cassandra started by scripts/stack (started once, under a file lock, if
// they are not up), and small helpers to read what scoop wrote.
package testenv

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	kafkago "github.com/segmentio/kafka-go"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Ports of the stack (scripts/stack reads the same variables).
var (
	PGPort        = env("SCOOP_PG_PORT", "5432")
	KafkaPort     = env("SCOOP_KAFKA_PORT", "9092")
	CassandraPort = env("SCOOP_CASSANDRA_PORT", "9042")
)

// Root is the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// PGURL is the URL of a database of the stack.
func PGURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%s/%s?sslmode=disable", PGPort, db)
}

// Broker is the Kafka bootstrap address.
func Broker() string { return "127.0.0.1:" + KafkaPort }

// CassandraAddr is the CQL address.
func CassandraAddr() string { return "127.0.0.1:" + CassandraPort }

var once sync.Once
var onceErr error

// Require brings the stack up (once per test binary) or fails the test.
// With -short (make unit) the test is skipped instead: only pure tests run.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL, Kafka and Cassandra (scripts/stack); skipped with -short")
	}
	once.Do(func() { onceErr = StackUp() })
	if onceErr != nil {
		t.Fatalf("stack: %v", onceErr)
	}
}

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// StackUp runs scripts/stack up unless every server answers, holding a lock
// so test binaries running in parallel start the stack once.
func StackUp() error {
	if reachable("127.0.0.1:"+PGPort) && reachable(Broker()) && reachable(CassandraAddr()) {
		return nil
	}
	lockPath := filepath.Join(os.TempDir(), "scoop-stack.lock")
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return Stack("up")
}

// Stack runs scripts/stack with args (e.g. "down", "cassandra").
func Stack(args ...string) error { return stackWith("", nil, args...) }

// stackWith runs scripts/stack with args and env added to the environment
// (a private stack's directory and ports); which names that stack in the
// error.
func stackWith(which string, env []string, args ...string) error {
	cmd := exec.Command(filepath.Join(Root(), "scripts", "stack"), args...)
	cmd.Dir = Root()
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if which != "" {
			which = " (" + which + ")"
		}
		return fmt.Errorf("scripts/stack %s%s: %w\n%s", strings.Join(args, " "), which, err, out)
	}
	return nil
}

// Name returns a name unique to this test run, usable as identifier.
func Name(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1_000_000_000)
}

// Conn opens a pgx connection to db, closed when the test ends.
func Conn(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, PGURL(db))
	if err != nil {
		t.Fatalf("connect %s: %v", db, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// Exec runs SQL or fails the test.
func Exec(t testing.TB, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// DropSlot removes a replication slot when the test ends.
func DropSlot(t testing.TB, slot string) {
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), PGURL("monolith"))
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		for i := 0; i < 50; i++ {
			_, err := c.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
			if err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// ReadTopic reads every partition of topic from the start until at least n
// messages arrived or the timeout passed; it returns what it read.
func ReadTopic(t testing.TB, topic string, n int, timeout time.Duration) []kafkago.Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var msgs []kafkago.Message
	for {
		msgs = readAll(t, topic)
		if len(msgs) >= n || time.Now().After(deadline) {
			return msgs
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readAll(t testing.TB, topic string) []kafkago.Message {
	conn, err := kafkago.Dial("tcp", Broker())
	if err != nil {
		t.Fatalf("dial kafka: %v", err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil
	}
	var out []kafkago.Message
	for _, p := range parts {
		out = append(out, readPartition(t, topic, p.ID)...)
	}
	return out
}

func readPartition(t testing.TB, topic string, partition int) []kafkago.Message {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kafkago.DialLeader(ctx, "tcp", Broker(), topic, partition)
	if err != nil {
		t.Fatalf("dial leader %s/%d: %v", topic, partition, err)
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		t.Fatalf("read offsets %s/%d: %v", topic, partition, err)
	}
	if last <= first {
		return nil
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{Broker()}, Topic: topic, Partition: partition, MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		t.Fatalf("set offset: %v", err)
	}
	var out []kafkago.Message
	for off := first; off < last; off++ {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s/%d at %d: %v", topic, partition, off, err)
		}
		out = append(out, m)
		if m.Offset >= last-1 {
			break
		}
	}
	return out
}

// Main is the TestMain of a package with integration tests: the stack is
// brought up before the tests run, except under -short (make unit), where
// the tests that need it skip themselves (Require).
func Main(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		if err := StackUp(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}
