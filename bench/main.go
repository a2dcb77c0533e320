// Command bench measures scoop against the raw limits of the servers it sits
// between, on the same workloads, in the same run (the machine is shared and
// small, so absolute numbers are noisy; the ratios are what to read).
//
//	go run ./bench              # default sizes (1,000,000 rows), about 20 minutes on 2 quiet cores
//	BENCH_ROWS=200000 go run ./bench  # development size, about 4 minutes
//	BENCH_SMOKE=1 go run ./bench  # tiny sizes, under ~2 minutes, no timing asserted
//
// See bench/README.md for the phases, the environment knobs and the output.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/scoop-cdc/scoop/internal/testenv"
)

// config is everything the environment can change (BENCH_*).
type config struct {
	smoke            bool
	rows             int     // main workload: small-row inserts in 1,000-row transactions
	updateRows       int     // updates of a pre-filled table, 1,000 per transaction
	mixOps           int     // 400 inserts + 400 updates + 200 deletes per transaction
	bigtxRows        int     // one transaction
	toastRows        int     // wide rows, then an update that leaves the TOASTed text unchanged
	toastBytes       int     // bytes of TOASTed text per wide row
	snapshotRows     int     // rows of the snapshot table
	latencySecs      float64 // duration of the steady-rate latency phase
	latencyRate      float64 // rows/s of the latency phase (0: half the measured PG sink rate)
	latencyFixedRate float64 // rows/s of the second latency phase (0: skipped)
	reverseRows      int     // rows of the reverse phase's bulk service insert
	reverseRate      float64 // single-row service transactions/s of the reverse phase's stream
	reverse          bool    // run the reverse phase
	verifyRows       int     // rows of the verify phase's table
	verify           bool    // run the verify phase
	workloads        []string
	outDir           string
	scoopBin         string
	keep             bool // keep tables, topics, keyspace and logs
	profile          bool
	profileWorkload  string // the workload whose end-to-end runs are profiled
	partitions       int
	scoopEnv         []string // extra environment of every scoop process (BENCH_SCOOP_ENV)
}

var allWorkloads = []string{"insert", "schemas", "update", "mix", "bigtx", "toast"}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
		if err != nil || n < 0 {
			fatalf("%s=%q: want a non-negative integer", name, v)
		}
		return n
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if v := os.Getenv(name); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			fatalf("%s=%q: want a non-negative number", name, v)
		}
		return f
	}
	return def
}

func envBool(name string, def bool) bool {
	switch strings.ToLower(os.Getenv(name)) {
	case "":
		return def
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	}
	fatalf("%s=%q: want 1 or 0", name, os.Getenv(name))
	return def
}

func loadConfig(root string) config {
	c := config{smoke: envBool("BENCH_SMOKE", false)}
	rowsDef, latDef := 1_000_000, 20.0
	if c.smoke {
		rowsDef, latDef = 2_000, 3
	}
	c.rows = max(envInt("BENCH_ROWS", rowsDef), 1000)
	c.updateRows = max(envInt("BENCH_UPDATE_ROWS", c.rows/2), 1000)
	c.mixOps = max(envInt("BENCH_MIX_OPS", c.rows/2)/1000*1000, 1000)
	c.bigtxRows = max(envInt("BENCH_BIGTX_ROWS", c.rows), 1000)
	c.toastRows = max(envInt("BENCH_TOAST_ROWS", max(c.rows/50, 50)), 10)
	c.toastBytes = max(envInt("BENCH_TOAST_BYTES", 16384), 4096)
	c.snapshotRows = max(envInt("BENCH_SNAPSHOT_ROWS", 5*c.rows), 1000)
	c.latencySecs = envFloat("BENCH_LATENCY_SECONDS", latDef)
	c.latencyRate = envFloat("BENCH_LATENCY_RATE", 0)
	c.latencyFixedRate = envFloat("BENCH_LATENCY_FIXED_RATE", 5000)
	c.reverseRows = max(envInt("BENCH_REVERSE_ROWS", c.rows/4), 1000)
	c.reverseRate = envFloat("BENCH_REVERSE_RATE", 100)
	if c.reverseRate <= 0 {
		fatalf("BENCH_REVERSE_RATE=%q: want a positive rate", os.Getenv("BENCH_REVERSE_RATE"))
	}
	c.reverse = envBool("BENCH_REVERSE", true)
	verifyDef := 1_000_000
	if c.smoke {
		verifyDef = 20_000
	}
	c.verifyRows = max(envInt("BENCH_VERIFY_ROWS", verifyDef), 1000)
	c.verify = envBool("BENCH_VERIFY", true)
	c.keep = envBool("BENCH_KEEP", false)
	c.profile = envBool("BENCH_PROFILE", !c.smoke)
	c.profileWorkload = "insert"
	if v := os.Getenv("BENCH_PROFILE_WORKLOAD"); v != "" {
		if !slices.Contains(allWorkloads, v) {
			fatalf("BENCH_PROFILE_WORKLOAD: unknown workload %q (use %s)", v, strings.Join(allWorkloads, ","))
		}
		c.profileWorkload = v
	}
	c.partitions = 3
	c.workloads = allWorkloads
	if v := os.Getenv("BENCH_WORKLOADS"); v != "" {
		c.workloads = nil
		for _, w := range strings.Split(v, ",") {
			w = strings.TrimSpace(w)
			ok := false
			for _, a := range allWorkloads {
				ok = ok || a == w
			}
			if !ok {
				fatalf("BENCH_WORKLOADS: unknown workload %q (use %s)", w, strings.Join(allWorkloads, ","))
			}
			c.workloads = append(c.workloads, w)
		}
	}
	c.outDir = os.Getenv("BENCH_OUT")
	if c.outDir == "" {
		c.outDir = filepath.Join(root, "bench", "results")
		if c.smoke {
			// Smoke runs never replace the committed results.
			c.outDir = filepath.Join(root, "bench", "results", "smoke.tmp")
		}
	}
	c.scoopBin = os.Getenv("BENCH_SCOOP_BIN")
	for _, kv := range strings.Fields(os.Getenv("BENCH_SCOOP_ENV")) {
		if !strings.HasPrefix(kv, "SCOOP_") || !strings.Contains(kv, "=") {
			fatalf("BENCH_SCOOP_ENV: %q is not SCOOP_NAME=value", kv)
		}
		c.scoopEnv = append(c.scoopEnv, kv)
	}
	return c
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(2)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func main() {
	root := testenv.Root()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) == 3 && os.Args[1] == "clean" {
		if err := cleanRun(ctx, os.Args[2]); err != nil {
			fatalf("%v", err)
		}
		return
	}
	if len(os.Args) > 1 {
		fatalf("usage: go run ./bench (settings in BENCH_* variables, see bench/README.md), or go run ./bench clean <run id>")
	}
	cfg := loadConfig(root)

	logf("bringing the stack up (scripts/stack up; a no-op when it is up)")
	if err := testenv.StackUp(); err != nil {
		fatalf("%v", err)
	}
	b, err := newBench(ctx, cfg, root)
	if err != nil {
		fatalf("%v", err)
	}
	code := b.run(ctx)
	os.Exit(code)
}

func randHex(n int) string {
	buf := make([]byte, n)
	rand.Read(buf)
	return hex.EncodeToString(buf)
}

// run executes every phase, writes the results and cleans up. The exit code
// is 0 unless a phase failed (timing is never asserted).
func (b *bench) run(ctx context.Context) int {
	defer b.close()
	started := time.Now()
	b.res.LoadStart = loadAvg()
	if err := b.prepare(ctx); err != nil {
		b.fail("prepare", err)
	} else {
		// What an earlier run left to the servers (a compaction, files of
		// deleted topics) is not charged to this one's first phases.
		waited, busy := settle(ctx)
		logf("the machine settled in %.1fs (%.0f%% busy)", waited.Seconds(), busy*100)
		b.warmCassandra(ctx)
		for _, name := range b.cfg.workloads {
			if ctx.Err() != nil {
				break
			}
			w := b.workload(name)
			logf("=== workload %s: %s", w.name, w.desc)
			wr := b.runWorkload(ctx, w)
			b.res.Workloads = append(b.res.Workloads, wr)
		}
		if ctx.Err() == nil {
			b.runLatency(ctx)
		}
		if ctx.Err() == nil && b.cfg.reverse {
			b.runReverse(ctx)
		}
		if ctx.Err() == nil {
			b.runSnapshot(ctx)
		}
		if ctx.Err() == nil && b.cfg.verify {
			b.runVerify(ctx)
		}
	}
	if ctx.Err() != nil {
		b.fail("run", errors.New("interrupted"))
	}
	b.res.LoadEnd = loadAvg()
	b.res.TotalSeconds = time.Since(started).Seconds()
	b.summarize()
	if err := b.write(); err != nil {
		b.fail("write results", err)
		logf("writing results: %v", err)
	}
	b.cleanup()
	if len(b.res.Errors) > 0 {
		logf("%d phase(s) failed:", len(b.res.Errors))
		for _, e := range b.res.Errors {
			logf("  %s", e)
		}
		if !b.cfg.keep {
			logf("scoop logs kept in %s", b.logDir)
		}
		return 1
	}
	logf("done in %s", time.Since(started).Round(time.Second))
	return 0
}

// buildScoop builds the binary unless BENCH_SCOOP_BIN names one.
func buildScoop(root, dir, bin string) (string, error) {
	if bin != "" {
		if !filepath.IsAbs(bin) {
			bin = filepath.Join(root, bin)
		}
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("BENCH_SCOOP_BIN: %w", err)
		}
		return bin, nil
	}
	out := filepath.Join(dir, "scoop")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/scoop")
	cmd.Dir = root
	if o, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/scoop: %v\n%s", err, o)
	}
	return out, nil
}

func gitDescribe(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	// The results of an earlier run (bench/results) are not a change of
	// the code measured.
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		rev += " (tree modified)"
	}
	return rev
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func hostInfo() string {
	return fmt.Sprintf("%s, %d CPUs", runtime.Version(), runtime.NumCPU())
}
