package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStackKafkaNodesRefused: scripts/stack names the variable or the node
// at fault (status only reads pid files: no server is touched).
func TestStackKafkaNodesRefused(t *testing.T) {
	for _, c := range []struct {
		nodes, server, want string
	}{
		{"2", "kafka", "stack: error: SCOOP_KAFKA_NODES must be 1 or 3, not '2'"},
		{"", "kafka-2", "stack: error: no kafka-2: Kafka has 1 node(s) (SCOOP_KAFKA_NODES)"},
		{"3", "kafka-4", "stack: error: no kafka-4: Kafka has 3 node(s) (SCOOP_KAFKA_NODES)"},
		{"3", "kafka-x", "stack: error: unknown server 'kafka-x' (pg, kafka, kafka-N, cassandra)"},
	} {
		cmd := exec.Command(filepath.Join(Root(), "scripts", "stack"), "status", c.server)
		cmd.Env = append(os.Environ(), "SCOOP_STACK_DIR="+t.TempDir(), "SCOOP_KAFKA_NODES="+c.nodes)
		out, err := cmd.CombinedOutput()
		if err == nil || strings.TrimSpace(string(out)) != c.want {
			t.Errorf("SCOOP_KAFKA_NODES=%q status %s: %v\n%s\nwant %s", c.nodes, c.server, err, out, c.want)
		}
	}
}
