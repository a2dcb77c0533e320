package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/schema"
)

// tcpProxy forwards a local port to a server. stop closes it and every
// connection through it, so the server looks down to whoever uses the
// proxy's address; start opens it again on the same port.
type tcpProxy struct {
	addr, target string
	mu           sync.Mutex
	l            net.Listener
	conns        map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{addr: freeAddr(t), target: target, conns: map[net.Conn]bool{}}
	p.start(t)
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) start(t *testing.T) {
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

func (p *tcpProxy) pipe(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, s) {
		c.Close()
		s.Close()
		return
	}
	go func() { io.Copy(s, c); s.Close() }()
	io.Copy(c, s)
	c.Close()
}

func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// setEnv replaces (or adds) one variable of a process environment.
func setEnv(env []string, key, value string) []string {
	out := append([]string{}, env...)
	for i, kv := range out {
		if strings.HasPrefix(kv, key+"=") {
			out[i] = key + "=" + value
			return out
		}
	}
	return append(out, key+"="+value)
}

// waitFor polls cond until it holds or timeout passes; the failure shows
// cond's last word and the daemon's log.
func waitFor(t *testing.T, d *proc, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s\nscoop log tail:\n%s", what, timeout, last, tail(d.logs(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readiness waits until /readyz answers code with a body containing want.
func readiness(t *testing.T, d *proc, base string, code int, want string, timeout time.Duration) string {
	t.Helper()
	var body string
	waitFor(t, d, fmt.Sprintf("/readyz %d with %q", code, want), timeout, func() (bool, string) {
		var c int
		c, body = get(t, base+"/readyz", "")
		return c == code && strings.Contains(body, want), fmt.Sprintf("%d %q", c, body)
	})
	return body
}

// status runs `scoop status` against the daemon at addr.
func status(t *testing.T, addr string, args ...string) string {
	t.Helper()
	t.Setenv("SCOOP_ADMIN_ADDR", addr)
	t.Setenv("SCOOP_ADMIN_TOKEN", "")
	var out, errOut bytes.Buffer
	if code := runMain(append([]string{"status"}, args...), &out, &errOut); code != 0 {
		t.Fatalf("scoop status %v: exit %d: %s", args, code, errOut.String())
	}
	return out.String()
}

// mappingState reads one mapping's state from `scoop status --json`.
func mappingState(t *testing.T, addr, name string) (string, string) {
	var doc struct {
		Mappings map[string]struct{ State, Reason string }
	}
	if err := json.Unmarshal([]byte(status(t, addr, "--json")), &doc); err != nil {
		t.Fatal(err)
	}
	m := doc.Mappings[name]
	return m.State, m.Reason
}

// TestReadinessNamesUnreachableStore: a store that goes away turns /readyz
// red naming it, pauses only its mapping (status and metrics say so) while
// the other keeps flowing, and everything recovers when it is back. The
// status table is checked in both states, and the alert rules' metrics
// against /metrics.
func TestReadinessNamesUnreachableStore(t *testing.T) {
	ok, flaky := createTable(t, 10), createTable(t, 10)
	proxy := newProxy(t, "127.0.0.1:"+testenv.PGPort)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: ok\n    source: public.%s\n    store: accounts\n  - name: flaky\n    source: public.%s\n    store: flaky\n", ok, flaky))
	addr := freeAddr(t)
	env := setEnv(e.env, "SCOOP_ADMIN_ADDR", addr)
	env = append(env, "SCOOP_STORE_FLAKY_URL=postgres://postgres@"+proxy.addr+"/service?sslmode=disable", "SCOOP_MONITOR_INTERVAL=200ms")
	d := startProc(t, env)
	waitReady(t, d)
	waitEqual(t, d, "ok", pgOrders(t, "monolith", ok), pgOrders(t, "service", ok))
	waitEqual(t, d, "flaky", pgOrders(t, "monolith", flaky), pgOrders(t, "service", flaky))
	base := "http://" + addr
	readiness(t, d, base, 200, "ready\n", 30*time.Second)
	// The source marks its snapshot done (and streams) a moment after the
	// rows are in the stores.
	waitFor(t, d, "both streaming, walsender active", 30*time.Second, func() (bool, string) {
		js := status(t, addr, "--json")
		a, _ := mappingState(t, addr, "ok")
		b, _ := mappingState(t, addr, "flaky")
		return a == "streaming" && b == "streaming" && strings.Contains(js, `"active": true`), a + " " + b
	})

	table := status(t, addr)
	t.Logf("scoop status:\n%s", table)
	for _, re := range []string{
		`(?m)^slot ` + e.slot + `  publication ` + e.slot + `  leader \(this instance streams from the slot\)$`,
		`(?m)^  server [0-9A-F]+/[0-9A-F]+  received [0-9A-F]+/[0-9A-F]+  confirmed [0-9A-F]+/[0-9A-F]+  restart [0-9A-F]+/[0-9A-F]+$`,
		`(?m)^  retained WAL \d+\.\d MB  wal_status (reserved|extended)  walsender active  source lag \d+\.\ds$`,
		`(?m)^ready$`,
		`(?m)^MAPPING +STATE +LAG +PENDING +RATE +APPLIED +DEAD LETTERS +OWNER +STORE +SOURCE +REASON$`,
		`(?m)^ok +streaming +\d+\.\ds +\d+ +\d+\.\d/s +10 +0 +\? +accounts +public\.` + ok + ` *$`,
		`(?m)^flaky +streaming +\d+\.\ds +\d+ +\d+\.\d/s +10 +0 +\? +flaky +public\.` + flaky + ` *$`,
	} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("scoop status lacks %s:\n%s", re, table)
		}
	}
	if js := status(t, addr, "--json"); !strings.Contains(js, `"applied": 10`) || !strings.Contains(js, `"state": "streaming"`) {
		t.Errorf("scoop status --json:\n%s", js)
	}
	// Idle after a streamed change, the lag stays near zero: heartbeats
	// (every 500ms here) carry the source's clock.
	mono := testenv.Conn(t, "monolith")
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s VALUES (1000, 1, 'streamed', 's')`, schema.QuoteIdent(ok)))
	waitEqual(t, d, "ok streamed", pgOrders(t, "monolith", ok), pgOrders(t, "service", ok))
	time.Sleep(3 * time.Second)
	var lag struct {
		Source struct {
			LagSeconds float64 `json:"lag_seconds"`
		}
		Mappings map[string]struct {
			LagSeconds float64 `json:"lag_seconds"`
		}
	}
	if err := json.Unmarshal([]byte(status(t, addr, "--json")), &lag); err != nil || lag.Source.LagSeconds > 1.5 || lag.Mappings["ok"].LagSeconds > 1.5 {
		t.Errorf("lag after 3s idle: source %.1fs, mapping ok %.1fs (%v)", lag.Source.LagSeconds, lag.Mappings["ok"].LagSeconds, err)
	}

	proxy.stop()
	want := "store flaky unreachable: dial tcp " + proxy.addr + ": connect: connection refused"
	body := readiness(t, d, base, 503, want, 30*time.Second)
	if !strings.HasPrefix(body, "not ready:\n") || strings.Contains(body, "store accounts") {
		t.Errorf("readyz body: %q", body)
	}
	for _, tb := range []string{ok, flaky} {
		testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, g, 'late', 's' FROM generate_series(11, 20) g`, schema.QuoteIdent(tb)))
	}
	// Only the mapping of the missing store pauses.
	waitEqual(t, d, "ok while flaky is down", pgOrders(t, "monolith", ok), pgOrders(t, "service", ok))
	waitFor(t, d, "flaky paused", 60*time.Second, func() (bool, string) {
		st, reason := mappingState(t, addr, "flaky")
		return st == "paused" && reason != "", st + ": " + reason
	})
	table = status(t, addr)
	t.Logf("scoop status with flaky down:\n%s", table)
	for _, re := range []string{
		`(?m)^NOT READY:$`,
		`(?m)^  - ` + regexp.QuoteMeta(want) + `$`,
		`(?m)^  - mapping flaky paused: store flaky: .+$`,
		`(?m)^ok +streaming +\d+\.\ds +\d+ +\d+\.\d/s +21 +0 +\? +accounts `,
		`(?m)^flaky +paused +\d+\.\ds +\d+ +\d+\.\d/s +10 +0 +\? +flaky +public\.` + flaky + ` +\S.*$`,
	} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("scoop status with flaky down lacks %s:\n%s", re, table)
		}
	}
	_, metrics := get(t, base+"/metrics", "")
	for _, m := range []string{`scoop_ready 0`, `scoop_store_up{store="flaky"} 0`, `scoop_store_up{store="accounts"} 1`, `scoop_kafka_up 1`,
		`scoop_sink_paused{mapping="flaky"} 1`, `scoop_sink_state{mapping="flaky",state="paused"} 1`, `scoop_sink_state{mapping="ok",state="streaming"} 1`,
		`scoop_source_slot_wal_status{status="reserved"} 1`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	// The failed attempts on the missing store count as store_unavailable
	// errors of its mapping only.
	if v := metricValue(metrics, `scoop_sink_errors_total{kind="store_unavailable",mapping="flaky"}`); v < 1 {
		t.Errorf(`scoop_sink_errors_total{kind="store_unavailable",mapping="flaky"} = %v, want at least 1`, v)
	}
	if v := metricValue(metrics, `scoop_sink_errors_total{kind="store_unavailable",mapping="ok"}`); v != 0 {
		t.Errorf(`scoop_sink_errors_total{kind="store_unavailable",mapping="ok"} = %v, want 0`, v)
	}
	checkAlertRules(t, metrics)
	checkDashboard(t, metrics)

	proxy.start(t)
	readiness(t, d, base, 200, "ready\n", 90*time.Second)
	waitEqual(t, d, "flaky after its store is back", pgOrders(t, "monolith", flaky), pgOrders(t, "service", flaky))
	waitFor(t, d, "flaky streaming", 30*time.Second, func() (bool, string) {
		st, reason := mappingState(t, addr, "flaky")
		return st == "streaming", st + ": " + reason
	})
	if !strings.Contains(d.logs(), `msg="not ready" reason="`+want+`"`) || !strings.Contains(d.logs(), `msg=cleared reason="`+want+`"`) {
		t.Errorf("the log does not say when readiness changed:\n%s", tail(d.logs(), 3000))
	}
}

// TestReadinessSeesStalledSource: a source whose walsender is terminated
// over and over while changes wait cannot confirm anything: after
// SCOOP_STALL_TIMEOUT readiness turns red saying so, and green again once
// it streams.
func TestReadinessSeesStalledSource(t *testing.T) {
	table := createTable(t, 5)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: st\n    source: public.%s\n    store: accounts\n", table))
	addr := freeAddr(t)
	env := setEnv(e.env, "SCOOP_ADMIN_ADDR", addr)
	env = append(env, "SCOOP_MONITOR_INTERVAL=200ms", "SCOOP_STALL_TIMEOUT=3s")
	d := startProc(t, env)
	waitReady(t, d)
	waitEqual(t, d, "st", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
	base := "http://" + addr
	readiness(t, d, base, 200, "ready\n", 30*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := testenv.Conn(t, "monolith")
		for i := 100; ctx.Err() == nil; i++ {
			c.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, e.slot)
			c.Exec(ctx, fmt.Sprintf(`INSERT INTO %s VALUES ($1, $1, 'x', 's')`, schema.QuoteIdent(table)), i)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	body := readiness(t, d, base, 503, "source stalled: slot "+e.slot+" has confirmed nothing for ", 60*time.Second)
	if !strings.Contains(body, "while WAL is pending (confirmed ") {
		t.Errorf("readyz body: %q", body)
	}
	if _, metrics := get(t, base+"/metrics", ""); !strings.Contains(metrics, "scoop_source_stalled 1") {
		t.Errorf("metrics lack scoop_source_stalled 1")
	}
	cancel()
	<-done
	readiness(t, d, base, 200, "ready\n", 90*time.Second)
	waitEqual(t, d, "st after the stall", pgOrders(t, "monolith", table), pgOrders(t, "service", table))
}

// TestReadinessSeesRetainedWAL: WAL the slot must keep (an open transaction
// holds its restart position while other writes go on) over
// SCOOP_MAX_RETAINED_WAL_MB turns readiness red, shows in status and
// metrics, and clears once the slot can move on.
func TestReadinessSeesRetainedWAL(t *testing.T) {
	table := createTable(t, 1)
	filler := testenv.Name("fill")
	mono := testenv.Conn(t, "monolith")
	testenv.Exec(t, mono, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, pad text)`, schema.QuoteIdent(filler)))
	t.Cleanup(func() { testenv.Exec(t, mono, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, schema.QuoteIdent(filler))) })
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: wal\n    source: public.%s\n    store: accounts\n", table))
	addr := freeAddr(t)
	env := setEnv(e.env, "SCOOP_ADMIN_ADDR", addr)
	env = append(env, "SCOOP_MONITOR_INTERVAL=200ms", "SCOOP_MAX_RETAINED_WAL_MB=1")
	d := startProc(t, env)
	waitReady(t, d)
	base := "http://" + addr
	readiness(t, d, base, 200, "ready\n", 60*time.Second)

	holder := testenv.Conn(t, "monolith")
	testenv.Exec(t, holder, `BEGIN`)
	testenv.Exec(t, holder, fmt.Sprintf(`INSERT INTO %s VALUES (0, 'held')`, schema.QuoteIdent(filler)))
	testenv.Exec(t, mono, fmt.Sprintf(`INSERT INTO %s SELECT g, repeat(md5(g::text), 40) FROM generate_series(1, 3000) g`, schema.QuoteIdent(filler)))
	body := readiness(t, d, base, 503, "MB of WAL, over SCOOP_MAX_RETAINED_WAL_MB=1", 60*time.Second)
	if !regexp.MustCompile(`slot ` + e.slot + ` retains \d+\.\d MB of WAL, over SCOOP_MAX_RETAINED_WAL_MB=1`).MatchString(body) {
		t.Errorf("readyz body: %q", body)
	}
	if table := status(t, addr); !regexp.MustCompile(`(?m)^  retained WAL \d+\.\d MB \(limit 1 MB\)  wal_status `).MatchString(table) {
		t.Errorf("status:\n%s", table)
	}
	if _, metrics := get(t, base+"/metrics", ""); !strings.Contains(metrics, "scoop_source_retained_wal_limit_bytes 1.048576e+06") {
		t.Errorf("metrics lack the limit:\n%s", metrics)
	}
	testenv.Exec(t, holder, `ROLLBACK`)
	readiness(t, d, base, 200, "ready\n", 120*time.Second)
}

// TestStatusWatchRefreshes: --watch prints the table again every interval
// until interrupted; bad flags are refused with the fix.
func TestStatusWatchRefreshes(t *testing.T) {
	table := createTable(t, 2)
	e := newE2E(t, fmt.Sprintf("mappings:\n  - name: w\n    source: public.%s\n    store: accounts\n", table))
	addr := freeAddr(t)
	d := startProc(t, setEnv(e.env, "SCOOP_ADMIN_ADDR", addr))
	waitReady(t, d)
	t.Setenv("SCOOP_ADMIN_ADDR", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 1300*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	if err := statusCommand(ctx, []string{"--watch", "--interval", "500ms"}, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\nMAPPING "); n < 2 || strings.Count(out.String(), "--- ") < n {
		t.Fatalf("%d tables in 1.3s at 500ms:\n%s", n, out.String())
	}
	for args, want := range map[string]string{
		"--interval 1ms": "scoop status: --interval=1ms: must be at least 100ms",
		"now":            `scoop status: unexpected argument "now" (flags: --json, --watch, --interval)`,
	} {
		if err := statusCommand(context.Background(), strings.Fields(args), io.Discard); err == nil || err.Error() != want {
			t.Errorf("scoop status %s: %v, want %q", args, err, want)
		}
	}
}

// checkAlertRules: the alert rules in docs parse, and every scoop metric
// they use is on /metrics.
func checkAlertRules(t *testing.T, metrics string) {
	t.Helper()
	rules := loadAlertRules(t)
	have := map[string]bool{}
	for _, line := range strings.Split(metrics, "\n") {
		if name := regexp.MustCompile(`^[a-z_:]+`).FindString(line); name != "" {
			have[name] = true
		}
	}
	var missing []string
	for _, r := range rules {
		for _, name := range regexp.MustCompile(`\bscoop_[a-z_]+`).FindAllString(r.Expr, -1) {
			if !have[name] {
				missing = append(missing, r.Alert+": "+name)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("alert rules use metrics /metrics does not have: %v", missing)
	}
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlertRules(t *testing.T) []alertRule {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), "docs", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("docs/prometheus/alerts.yml: %v", err)
	}
	var out []alertRule
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("%s: rule %q needs alert, expr, labels.severity and annotations.summary", g.Name, r.Alert)
			}
			out = append(out, r)
		}
	}
	return out
}

// TestAlertRulesParse runs without servers: the rules file is well formed
// and names only scoop metrics that are documented in docs/operations.md.
func TestAlertRulesParse(t *testing.T) {
	rules := loadAlertRules(t)
	if len(rules) < 5 {
		t.Fatalf("only %d rules", len(rules))
	}
	doc, err := os.ReadFile(filepath.Join(testenv.Root(), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		for _, name := range regexp.MustCompile(`\bscoop_[a-z_]+`).FindAllString(r.Expr, -1) {
			if !regexp.MustCompile("`" + name + "[`{]").Match(doc) {
				t.Errorf("%s uses %s, which docs/operations.md does not describe", r.Alert, name)
			}
		}
	}
}

// dashboardExprs reads the Grafana dashboard and returns each panel's
// queries by panel title.
func dashboardExprs(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), "docs", "grafana", "scoop-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana/scoop-dashboard.json: %v", err)
	}
	out := map[string][]string{}
	for _, p := range dash.Panels {
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no title or no query", p.Title)
		}
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], tg.Expr)
		}
	}
	if dash.Title == "" || len(out) < 8 {
		t.Fatalf("dashboard %q has %d panels with queries", dash.Title, len(out))
	}
	return out
}

// checkDashboard: every scoop metric the dashboard queries is on /metrics.
func checkDashboard(t *testing.T, metrics string) {
	t.Helper()
	for title, exprs := range dashboardExprs(t) {
		for _, e := range exprs {
			for _, name := range regexp.MustCompile(`\bscoop_[a-z_]+`).FindAllString(e, -1) {
				if !regexp.MustCompile(`(?m)^` + name + `[ {]`).MatchString(metrics) {
					t.Errorf("dashboard panel %q uses %s, which /metrics does not have", title, name)
				}
			}
		}
	}
}

// TestDashboardParses runs without servers: the dashboard is JSON with
// queries, and every scoop metric it uses is described in docs/operations.md.
func TestDashboardParses(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.Root(), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for title, exprs := range dashboardExprs(t) {
		for _, e := range exprs {
			for _, name := range regexp.MustCompile(`\bscoop_[a-z_]+`).FindAllString(e, -1) {
				if !regexp.MustCompile("`" + name + "[`{]").Match(doc) {
					t.Errorf("panel %q uses %s, which docs/operations.md does not describe", title, name)
				}
			}
		}
	}
}
