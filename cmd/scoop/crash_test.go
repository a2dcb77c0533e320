package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		if err := testenv.StackUp(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "scoop-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "scoop")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build scoop: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a scoop process started from the built binary.
type proc struct {
	cmd *exec.Cmd
	log *os.File
}

func startProc(t *testing.T, env []string) *proc {
	t.Helper()
	testenv.Require(t)
	logf, err := os.CreateTemp(t.TempDir(), "scoop-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "run")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &proc{cmd: cmd, log: logf}
	t.Cleanup(func() { d.kill() })
	return d
}

func (d *proc) kill() {
	if d.cmd.ProcessState == nil {
		d.cmd.Process.Signal(syscall.SIGKILL)
		d.cmd.Wait()
	}
}

func (d *proc) logs() string {
	b, _ := os.ReadFile(d.log.Name())
	return string(b)
}

func writeMappings(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mappings.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCrashLosesNothing kills scoop with SIGKILL twice while multi-row
// transactions are committed, restarts it, and checks that every committed
// row is in Kafka (duplicates allowed, losses not).
func TestCrashLosesNothing(t *testing.T) {
	c := testenv.Conn(t, "monolith")
	table := testenv.Name("crash")
	testenv.Exec(t, c, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, n int)`, schema.QuoteIdent(table)))
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	mappings := writeMappings(t, fmt.Sprintf("mappings:\n  - name: crash\n    source: public.%s\n    store: accounts\n", table))
	env := []string{
		"SCOOP_SOURCE_URL=" + testenv.PGURL("monolith"),
		"SCOOP_KAFKA_BROKERS=" + testenv.Broker(),
		"SCOOP_TOPIC_PREFIX=" + prefix, "SCOOP_SLOT=" + slot, "SCOOP_PUBLICATION=" + slot,
		"SCOOP_MAPPINGS_FILE=" + mappings,
		"SCOOP_STORE_ACCOUNTS_URL=" + testenv.PGURL("service"),
		"SCOOP_ADMIN_ADDR=127.0.0.1:0",
		"SCOOP_HEARTBEAT_INTERVAL=500ms",
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	var committed int
	go func() {
		defer wg.Done()
		w := testenv.Conn(t, "monolith")
		next := 1
		for ctx.Err() == nil {
			// A multi-row statement, then a transaction of several statements
			// whose first change shares its LSN region with BEGIN.
			sql := fmt.Sprintf(`INSERT INTO %s SELECT g, 0 FROM generate_series(%d, %d) g`, schema.QuoteIdent(table), next, next+49)
			if _, err := w.Exec(context.Background(), sql); err != nil {
				t.Error(err)
				return
			}
			next += 50
			tx := fmt.Sprintf(`BEGIN; INSERT INTO %[1]s VALUES (%[2]d, 0); UPDATE %[1]s SET n = n + 1 WHERE id = %[3]d; INSERT INTO %[1]s VALUES (%[2]d + 1, 0); COMMIT`, schema.QuoteIdent(table), next, next-1)
			if _, err := w.Exec(context.Background(), tx); err != nil {
				t.Error(err)
				return
			}
			next += 2
			committed = next - 1
			time.Sleep(5 * time.Millisecond)
		}
	}()
	d := startProc(t, env)
	time.Sleep(3 * time.Second)
	d.kill()
	time.Sleep(time.Second)
	d = startProc(t, env)
	time.Sleep(2 * time.Second)
	d.kill()
	d = startProc(t, env)
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	topic := pipeline.TopicFor(prefix, "public", table)
	deadline := time.Now().Add(60 * time.Second)
	for {
		seen := map[int]bool{}
		for _, m := range testenv.ReadTopic(t, topic, committed, time.Second) {
			var k struct{ ID int }
			json.Unmarshal(m.Key, &k)
			seen[k.ID] = true
		}
		missing := 0
		first := 0
		for id := 1; id <= committed; id++ {
			if !seen[id] {
				missing++
				if first == 0 {
					first = id
				}
			}
		}
		if missing == 0 {
			t.Logf("%d rows committed across two SIGKILLs, all in Kafka", committed)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d committed rows missing from Kafka (first id %d)\nscoop log:\n%s", missing, committed, first, d.logs())
		}
		time.Sleep(time.Second)
	}
}

var (
	sigterm = syscall.SIGTERM
	timeNow = time.Now
)

// waitReady waits until the daemon logged that its source streams.
func waitReady(t *testing.T, d *proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.logs(), "msg=streaming") {
		if time.Now().After(deadline) {
			t.Fatalf("scoop not streaming:\n%s", d.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
