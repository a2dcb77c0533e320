package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// Kafka3 is the three-node Kafka cluster of scripts/stack
// (SCOOP_KAFKA_NODES=3), run beside the default stack under its own stack
// directory and ports: node i listens on SCOOP_KAFKA3_PORT + 2(i-1), its
// controller one above (19092, 19094, 19096 by default: below the ephemeral
// port range, where a client socket could hold a node's port). Topics get
// replication factor 3 and min.insync.replicas=2 from the broker defaults.
type Kafka3 struct {
	port int
	jars string
	env  []string
}

func stackDir() string { return env("SCOOP_STACK_DIR", filepath.Join(Root(), ".stack")) }

// Kafka3Dir is the cluster's stack directory (SCOOP_KAFKA3_DIR, default
// kafka3 in the default stack's directory; scripts/stack reset leaves it).
func Kafka3Dir() string {
	return env("SCOOP_KAFKA3_DIR", filepath.Join(stackDir(), "kafka3"))
}

// StartKafka3 brings the cluster up (under a file lock, so test binaries
// running in parallel start it once) and stops it when the test ends.
func StartKafka3(t testing.TB) *Kafka3 {
	t.Helper()
	Require(t)
	port, err := strconv.Atoi(env("SCOOP_KAFKA3_PORT", "19092"))
	if err != nil {
		t.Fatalf("SCOOP_KAFKA3_PORT: %v", err)
	}
	jars := env("SCOOP_STACK_JARS", filepath.Join(stackDir(), "jars"))
	k := &Kafka3{port: port, jars: jars, env: []string{
		"SCOOP_STACK_DIR=" + Kafka3Dir(), "SCOOP_STACK_JARS=" + jars,
		"SCOOP_KAFKA_NODES=3", "SCOOP_KAFKA_PORT=" + strconv.Itoa(port),
	}}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "scoop-kafka3.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGKILL: the last node of a cluster cannot shut down cleanly
		// without a quorum and would wait out the 60 s SIGTERM grace.
		if err := k.stack("kill", "kafka"); err != nil {
			t.Errorf("stop the three-node Kafka: %v", err)
		}
		syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		lock.Close()
	})
	start := time.Now()
	if err := k.stack("up", "kafka"); err != nil {
		t.Fatal(err)
	}
	t.Logf("three-node Kafka up in %s", time.Since(start).Round(100*time.Millisecond))
	return k
}

// Brokers are the addresses of the three nodes.
func (k *Kafka3) Brokers() []string {
	return []string{k.Addr(1), k.Addr(2), k.Addr(3)}
}

// Addr is node i's broker address (i from 1 to 3).
func (k *Kafka3) Addr(i int) string { return fmt.Sprintf("127.0.0.1:%d", k.port+2*(i-1)) }

// Kill SIGKILLs the given nodes (1 to 3).
func (k *Kafka3) Kill(t testing.TB, nodes ...int) {
	t.Helper()
	if err := k.stack(append([]string{"kill"}, nodeNames(nodes)...)...); err != nil {
		t.Fatal(err)
	}
}

// Up starts the given nodes again and waits until they answer.
func (k *Kafka3) Up(t testing.TB, nodes ...int) {
	t.Helper()
	if err := k.stack(append([]string{"up"}, nodeNames(nodes)...)...); err != nil {
		t.Fatal(err)
	}
}

func nodeNames(nodes []int) []string {
	var names []string
	for _, i := range nodes {
		names = append(names, fmt.Sprintf("kafka-%d", i))
	}
	return names
}

// Leader returns the node leading partition 0 of topic and its in-sync
// replicas, asking any node that answers.
func (k *Kafka3) Leader(ctx context.Context, topic string) (leader int, isr []int, err error) {
	c := &kafkago.Client{Addr: kafkago.TCP(k.Brokers()...), Timeout: 10 * time.Second}
	md, err := c.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	for _, tp := range md.Topics {
		if tp.Name != topic || tp.Error != nil {
			continue
		}
		for _, p := range tp.Partitions {
			if p.ID != 0 {
				continue
			}
			for _, r := range p.Isr {
				isr = append(isr, r.ID)
			}
			return p.Leader.ID, isr, nil
		}
	}
	return 0, nil, fmt.Errorf("metadata of %s: no partition 0 yet", topic)
}

// ActiveController returns the node leading the KRaft controller quorum
// (kafka-metadata-quorum describe --status).
func (k *Kafka3) ActiveController(ctx context.Context) (int, error) {
	cmd := exec.CommandContext(ctx, env("SCOOP_JAVA", "java"), "-Xmx128m",
		"-Dlog4j2.configurationFile="+filepath.Join(Root(), "scripts", "deps", "kafka", "tools-log4j2.properties"),
		"-cp", filepath.Join(k.jars, "kafka", "*"), "org.apache.kafka.tools.MetadataQuorumCommand",
		"--bootstrap-server", strings.Join(k.Brokers(), ","), "describe", "--status")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("describe the controller quorum: %w\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "LeaderId:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("describe the controller quorum: no LeaderId in\n%s", out)
}

func (k *Kafka3) stack(args ...string) error { return stackWith("three-node Kafka", k.env, args...) }
