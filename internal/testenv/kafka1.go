package testenv

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Kafka1 is a private single-node Kafka of one test (scripts/stack under a
// stack directory of its own, on a port of its own), for tests that stop
// Kafka: the shared broker of the stack stays up for everybody else.
type Kafka1 struct {
	port int
	env  []string
}

// StartKafka1 brings a private broker up and kills it when the test ends.
func StartKafka1(t testing.TB) *Kafka1 {
	t.Helper()
	Require(t)
	port := freePortPair(t)
	k := &Kafka1{port: port, env: []string{
		"SCOOP_STACK_DIR=" + t.TempDir(),
		"SCOOP_STACK_JARS=" + env("SCOOP_STACK_JARS", filepath.Join(stackDir(), "jars")),
		"SCOOP_KAFKA_NODES=1", "SCOOP_KAFKA_PORT=" + strconv.Itoa(port),
	}}
	t.Cleanup(func() {
		if err := k.stack("kill", "kafka"); err != nil {
			t.Errorf("stop the private Kafka: %v", err)
		}
	})
	k.Up(t)
	return k
}

// Addr is the broker's address.
func (k *Kafka1) Addr() string { return "127.0.0.1:" + strconv.Itoa(k.port) }

// Kill SIGKILLs the broker.
func (k *Kafka1) Kill(t testing.TB) {
	t.Helper()
	if err := k.stack("kill", "kafka"); err != nil {
		t.Fatal(err)
	}
}

// Up starts the broker (again) and waits until it answers.
func (k *Kafka1) Up(t testing.TB) {
	t.Helper()
	start := time.Now()
	if err := k.stack("up", "kafka"); err != nil {
		t.Fatal(err)
	}
	t.Logf("private Kafka on %s up in %s", k.Addr(), time.Since(start).Round(100*time.Millisecond))
}

func (k *Kafka1) stack(args ...string) error { return stackWith("private Kafka", k.env, args...) }

// freePortPair finds a port p, below the ephemeral range, with p and p+1
// free (the broker and its controller).
func freePortPair(t testing.TB) int {
	t.Helper()
	base := 20000 + (os.Getpid()%500)*4
	for p := base; p < 28000; p += 2 {
		a, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p
	}
	t.Fatal("no two free ports for a private Kafka")
	return 0
}
