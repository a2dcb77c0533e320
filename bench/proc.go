package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scoop-cdc/scoop/internal/testenv"
)

// role is one scoop instance of a workload: its own slot, publication, topic
// prefix and mapping, so every measured process drains the same backlog
// independently.
type role struct {
	name   string // src, pg, cass, prof, lat, snap
	kind   string // parked (source only), pg, cass
	table  string // monolith table
	slot   string // also the publication
	prefix string // SCOOP_TOPIC_PREFIX
	topic  string
	dlq    string
	group  string   // consumer group of the mapping
	target string   // table in the store
	env    []string // added to its scoop processes' environment
	// mappingExtra is added to the mapping's YAML (indented fields, e.g.
	// "    direction: both\n").
	mappingExtra string
}

func (b *bench) newRole(name, kind, table string) *role {
	r := &role{name: name, kind: kind, table: table, slot: table + "_" + name}
	r.prefix = r.slot
	r.topic = r.prefix + ".public." + table
	r.dlq = r.prefix + ".dlq"
	r.group = r.prefix + ".m-" + name
	switch kind {
	case "parked":
		r.target = table + "_parked"
	case "pg":
		r.target = table + "_" + name
	case "cass":
		r.target = strings.TrimPrefix(table, b.id+"_") + "_" + name
	}
	b.add(&b.slots, r.slot)
	b.add(&b.pubs, r.slot)
	b.add(&b.topics, r.topic)
	b.add(&b.topics, r.dlq)
	b.add(&b.groups, r.group)
	return r
}

// scoopProc is one `scoop run` process.
type scoopProc struct {
	name    string
	cmd     *exec.Cmd
	admin   string
	logPath string
	start   time.Time
	exited  chan struct{}
	err     error
	peakKB  int64
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startScoop runs scoop for a role and waits until its admin server answers.
// The sink of a "parked" role finds an incompatible target table and waits
// with backoff, so the process measures the source alone. The admin port is
// chosen free and then released, so another process on the machine may take
// it before scoop binds it: then scoop is started again on another port
// (three tries).
// startScoop starts a role's `scoop run`; env is added last (it overrides
// the role's settings).
func (b *bench) startScoop(phase string, r *role, env ...string) (*scoopProc, error) {
	var err error
	for try := 1; try <= 3; try++ {
		var p *scoopProc
		if p, err = b.startScoopOnce(phase, r, env); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = p.waitHTTP(ctx, 30*time.Second)
		cancel()
		if err == nil {
			return p, nil
		}
		b.stopProc(p)
		if !strings.Contains(p.logTail(2000), "address already in use") {
			return nil, err
		}
		logf("%s: admin port taken by another process before scoop bound it; starting again (try %d)", p.name, try+1)
	}
	return nil, err
}

func (b *bench) startScoopOnce(phase string, r *role, extra []string) (*scoopProc, error) {
	store := testenv.PGURL("service")
	if r.kind == "cass" {
		store = "cassandra://" + testenv.CassandraAddr() + "/" + b.ks
	}
	mappings := fmt.Sprintf("mappings:\n  - name: m-%s\n    source: public.%s\n    store: svc\n    target: %s\n", r.name, r.table, r.target)
	mappings += r.mappingExtra
	mpath := filepath.Join(b.logDir, r.slot+".yaml")
	if err := os.WriteFile(mpath, []byte(mappings), 0o644); err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SCOOP_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"SCOOP_SOURCE_URL="+testenv.PGURL("monolith"),
		"SCOOP_KAFKA_BROKERS="+testenv.Broker(),
		"SCOOP_TOPIC_PREFIX="+r.prefix,
		"SCOOP_TOPIC_PARTITIONS="+strconv.Itoa(b.cfg.partitions),
		"SCOOP_SLOT="+r.slot,
		"SCOOP_PUBLICATION="+r.slot,
		"SCOOP_MAPPINGS_FILE="+mpath,
		"SCOOP_STORE_SVC_URL="+store,
		"SCOOP_ADMIN_ADDR="+admin,
		"SCOOP_ADMIN_PPROF=true", // the CPU profile of the drain
		"SCOOP_LOG_LEVEL=info",
	)
	env = append(env, b.cfg.scoopEnv...)
	env = append(env, r.env...)
	env = append(env, extra...)
	logPath := filepath.Join(b.logDir, fmt.Sprintf("%s-%s.log", r.slot, phase))
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(b.bin, "run")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &scoopProc{name: r.slot + "/" + phase, cmd: cmd, admin: admin, logPath: logPath, exited: make(chan struct{})}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	b.mu.Lock()
	b.procs[p] = true
	b.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *scoopProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// peakRSSMB reads VmHWM, the process's peak resident set.
func (p *scoopProc) peakRSSMB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				f := strings.Fields(rest)
				if len(f) > 0 {
					p.peakKB, _ = strconv.ParseInt(f[0], 10, 64)
				}
			}
		}
	}
	return float64(p.peakKB) / 1024
}

// stop sends SIGTERM and waits; SIGKILL after 20 s.
func (p *scoopProc) stop() {
	if !p.running() {
		return
	}
	p.peakRSSMB()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		logf("%s did not stop after SIGTERM; SIGKILL", p.name)
		p.kill()
	}
}

func (p *scoopProc) kill() {
	if p.running() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

func (b *bench) stopProc(p *scoopProc) {
	p.stop()
	b.mu.Lock()
	delete(b.procs, p)
	b.mu.Unlock()
}

// logTail is the end of a process's log, for error messages.
func (p *scoopProc) logTail(n int) string {
	data, _ := os.ReadFile(p.logPath)
	s := string(data)
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// exitError names the fatal error scoop printed last ("scoop: ...").
func (p *scoopProc) exitError() error {
	data, _ := os.ReadFile(p.logPath)
	msg := ""
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "scoop: ") {
			msg = line
		}
	}
	if msg == "" {
		msg = p.logTail(300)
	}
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return fmt.Errorf("scoop %s exited early (%v): %s (log %s)", p.name, p.err, msg, p.logPath)
}

// watchDecode polls scoop's /status every 5 ms until it reports a decoded
// event or snapshot row; the returned func gives that moment.
func (p *scoopProc) watchDecode(ctx context.Context) func() (time.Time, bool) {
	var mu sync.Mutex
	var at time.Time
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		client := &http.Client{Timeout: time.Second}
		for ctx.Err() == nil && p.running() {
			resp, err := client.Get("http://" + p.admin + "/status")
			if err == nil {
				var st map[string]any
				json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				n, _ := st["events"].(float64)
				m, _ := st["snapshot_rows"].(float64)
				if n+m > 0 {
					mu.Lock()
					at = time.Now()
					mu.Unlock()
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		return at, !at.IsZero()
	}
}

// waitHTTP waits until the admin server answers.
func (p *scoopProc) waitHTTP(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !p.running() {
			return p.exitError()
		}
		resp, err := http.Get("http://" + p.admin + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("scoop %s: admin server not up after %s", p.name, timeout)
}

// progress is what a poller saw: the count at start, the first time it
// moved, and when it reached the goal.
type progress struct {
	start      time.Time
	first      time.Time
	done       time.Time
	initial    int64
	firstCount int64
	final      int64
}

// wall is the time from start (process start) to done.
func (g progress) wall() float64 { return g.done.Sub(g.start).Seconds() }

// steadyRate is units/s between the first observed progress and done,
// scaled by perUnit (changes per message); it leaves out process start,
// connections and consumer-group joins. With too few observations it falls
// back to the wall rate.
func (g progress) steadyRate(units float64, perUnit float64) (float64, bool) {
	span := g.done.Sub(g.first).Seconds()
	moved := float64(g.final - g.firstCount)
	if g.first.IsZero() || span < 0.2 || moved < 0.2*float64(g.final-g.initial) {
		return units / g.wall(), false
	}
	return moved * perUnit / span, true
}

// waitCount polls count until it reaches want, the process exits, or the
// timeout passes.
func waitCount(ctx context.Context, p *scoopProc, start time.Time, want int64, timeout, every time.Duration, count func(context.Context) (int64, error)) (progress, error) {
	g := progress{start: start, initial: -1}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := count(qctx)
		cancel()
		now := time.Now()
		if err != nil {
			lastErr = err
		} else {
			if g.initial < 0 {
				g.initial = n
			}
			if g.first.IsZero() && n > g.initial {
				g.first, g.firstCount = now, n
			}
			g.final = n
			if n >= want {
				g.done = now
				return g, nil
			}
		}
		if p != nil && !p.running() {
			return g, p.exitError()
		}
		if now.After(deadline) {
			return g, fmt.Errorf("timed out after %s at %d of %d (last error: %v)", timeout, g.final, want, lastErr)
		}
		select {
		case <-ctx.Done():
			return g, ctx.Err()
		case <-time.After(every):
		}
	}
}

// phaseTimeout allows 2 minutes plus 1 ms per message.
func phaseTimeout(msgs int) time.Duration {
	return 2*time.Minute + time.Duration(msgs)*time.Millisecond
}

// ------------------------------------------------------------ CPU accounting

// procCPU is the user+system CPU time of a process, in seconds.
func procCPU(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// machineCPU returns busy and total CPU seconds of the machine.
// settle waits until the machine is quiet (under a quarter of its CPUs busy
// over a second), for a minute at most, and says how long it waited and
// how busy the machine was at the end: a phase sensitive to the machine's
// load (latency) then does not measure what an earlier phase left running
// (Cassandra compacts what the sink phases wrote for tens of seconds).
func settle(ctx context.Context) (waited time.Duration, busy float64) {
	start := time.Now()
	for {
		b0, t0 := machineCPU()
		select {
		case <-ctx.Done():
			return time.Since(start), 0
		case <-time.After(time.Second): // one second of the machine's CPU counters
		}
		b1, t1 := machineCPU()
		if t1 > t0 {
			busy = (b1 - b0) / (t1 - t0)
		}
		if busy < 0.25 || time.Since(start) > time.Minute {
			return time.Since(start), busy
		}
	}
}

func machineCPU() (busy, total float64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i < 8 { // user nice system idle iowait irq softirq steal
			total += n
			if i != 3 && i != 4 {
				busy += n
			}
		}
	}
	return busy / 100, total / 100
}

func pidFile(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

// pgClientPorts lists the local ports of the process's TCP connections to
// PostgreSQL (matched with pg_stat_activity.client_port).
func pgClientPorts(pid int) []int32 {
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	pgPort, _ := strconv.Atoi(testenv.PGPort)
	var ports []int32
	for _, file := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			_, lport, _ := strings.Cut(f[1], ":")
			_, rport, _ := strings.Cut(f[2], ":")
			lp, _ := strconv.ParseInt(lport, 16, 32)
			rp, _ := strconv.ParseInt(rport, 16, 32)
			if int(rp) == pgPort {
				ports = append(ports, int32(lp))
			}
		}
	}
	return ports
}

// cpuMeter measures the CPU a phase costs: the scoop process, the
// PostgreSQL backends serving it (walsender, sink session), the Kafka and
// Cassandra servers, and the whole machine.
type cpuMeter struct {
	start             time.Time
	kafka, cass       float64
	busy, total       float64
	kafkaPid, cassPid int
}

func (b *bench) startCPU() *cpuMeter {
	stack := os.Getenv("SCOOP_STACK_DIR")
	if stack == "" {
		stack = filepath.Join(b.root, ".stack")
	}
	m := &cpuMeter{start: time.Now(), kafkaPid: pidFile(filepath.Join(stack, "run", "kafka.pid")), cassPid: pidFile(filepath.Join(stack, "run", "cassandra.pid"))}
	m.kafka, m.cass = procCPU(m.kafkaPid), procCPU(m.cassPid)
	m.busy, m.total = machineCPU()
	return m
}

// stop returns CPU seconds by consumer over the phase (scoop and its
// backends: since they started, which is the phase's start).
func (m *cpuMeter) stop(ctx context.Context, b *bench, p *scoopProc) map[string]float64 {
	out := map[string]float64{"wall": time.Since(m.start).Seconds()}
	if p != nil {
		out["scoop"] = procCPU(p.cmd.Process.Pid)
		if ports := pgClientPorts(p.cmd.Process.Pid); len(ports) > 0 {
			rows, err := b.mono.Query(ctx, `SELECT pid, backend_type, coalesce(datname, '') FROM pg_stat_activity WHERE client_port = ANY($1) AND client_addr = '127.0.0.1'`, ports)
			if err == nil {
				for rows.Next() {
					var pid int
					var typ, db string
					if rows.Scan(&pid, &typ, &db) == nil {
						key := "pg_backends_" + db
						if typ == "walsender" {
							key = "pg_walsender"
						}
						out[key] += procCPU(pid)
					}
				}
				rows.Close()
			}
		}
	}
	// A server restarted during the phase (other work on the machine) has
	// no meaningful delta: left out.
	stack := os.Getenv("SCOOP_STACK_DIR")
	if stack == "" {
		stack = filepath.Join(b.root, ".stack")
	}
	if pidFile(filepath.Join(stack, "run", "kafka.pid")) == m.kafkaPid && m.kafkaPid > 0 {
		out["kafka"] = procCPU(m.kafkaPid) - m.kafka
	}
	if pidFile(filepath.Join(stack, "run", "cassandra.pid")) == m.cassPid && m.cassPid > 0 {
		out["cassandra"] = procCPU(m.cassPid) - m.cass
	}
	busy, total := machineCPU()
	out["machine_busy"] = busy - m.busy
	out["machine_capacity"] = total - m.total
	for k, v := range out {
		out[k] = math.Round(v*100) / 100
	}
	return out
}
