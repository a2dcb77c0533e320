package daemon

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/connectors/kafka"
	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/registry"
	"github.com/scoop-cdc/scoop/pipeline"
)

func healthySlot() postgres.SlotState {
	return postgres.SlotState{Exists: true, Active: true, CurrentLSN: 0x1_0000_2000, RestartLSN: 0x1_0000_0000, ConfirmedLSN: 0x1_0000_1000,
		WALStatus: "reserved", Snapshotted: map[postgres.TableName]bool{{Schema: "public", Name: "t"}: true}}
}

func mapping(name string) watched {
	return watched{Mapping: registry.Mapping{Mapping: pipeline.Mapping{Name: name, Source: "public.t", Store: "accounts"}}, stats: &kafka.ConsumerStats{}}
}

func TestAssessSlot(t *testing.T) {
	t0 := time.Unix(1000, 0)
	base := observation{now: t0, slotName: "s1", slot: healthySlot(), stall: time.Minute, maxRetained: 1 << 20}
	cases := []struct {
		name string
		edit func(o *observation)
		want []string
	}{
		{"healthy", func(o *observation) {}, nil},
		{"unreadable", func(o *observation) { o.slotErr = errors.New("read state of slot s1: connect to PostgreSQL: refused") },
			[]string{"source: read state of slot s1: connect to PostgreSQL: refused"}},
		{"missing", func(o *observation) { o.slot = postgres.SlotState{} },
			[]string{"source: slot s1 does not exist yet (the source creates it when it starts)"}},
		{"unreserved", func(o *observation) { o.slot.WALStatus = "unreserved" },
			[]string{"slot s1: wal_status is unreserved: PostgreSQL will remove WAL the slot still needs at its next checkpoint (max_slot_wal_keep_size is exceeded); the source must catch up now"}},
		{"lost", func(o *observation) { o.slot.WALStatus = "lost" },
			[]string{"slot s1: wal_status is lost: PostgreSQL removed WAL the slot needed; changes were lost (see docs/operations.md)"}},
		{"retained", func(o *observation) { o.slot.CurrentLSN = o.slot.RestartLSN + 3<<20 },
			[]string{"slot s1 retains 3.0 MB of WAL, over SCOOP_MAX_RETAINED_WAL_MB=1"}},
		{"no limit", func(o *observation) { o.slot.CurrentLSN = o.slot.RestartLSN + 3<<20; o.maxRetained = 0 }, nil},
		{"kafka and stores", func(o *observation) {
			o.kafkaErr = errors.New("ask Kafka for its brokers: refused")
			o.storeErrs = map[string]error{"orders": errors.New("dial tcp 127.0.0.1:1: refused"), "accounts": errors.New("timeout")}
		}, []string{"kafka unreachable: ask Kafka for its brokers: refused", "store accounts unreachable: timeout", "store orders unreachable: dial tcp 127.0.0.1:1: refused"}},
	}
	for _, c := range cases {
		o := base
		c.edit(&o)
		got := assess(o, &progress{}, map[string]*progress{})
		if !reflect.DeepEqual(got.problems, c.want) {
			t.Errorf("%s: problems\n%q\nwant\n%q", c.name, got.problems, c.want)
		}
		if warn := c.name == "unreserved" || c.name == "lost" || c.name == "retained"; got.walWarning != warn {
			t.Errorf("%s: walWarning %v", c.name, got.walWarning)
		}
	}
}

// A source is stalled when WAL is pending and its confirmed position has
// not moved for the stall timeout; moving or having nothing pending clears it.
func TestAssessSourceStall(t *testing.T) {
	t0 := time.Unix(1000, 0)
	src := &progress{}
	o := observation{now: t0, slotName: "s1", slot: healthySlot(), stall: time.Minute}
	at := func(d time.Duration, edit func(o *observation)) assessment {
		o.now = t0.Add(d)
		if edit != nil {
			edit(&o)
		}
		return assess(o, src, map[string]*progress{})
	}
	if a := at(0, nil); a.sourceStalled {
		t.Fatal("stalled at once")
	}
	if a := at(59*time.Second, nil); a.sourceStalled {
		t.Fatal("stalled before the timeout")
	}
	a := at(61*time.Second, func(o *observation) { o.slot.Active = false })
	want := "source stalled: slot s1 has confirmed nothing for 1m1s while WAL is pending (confirmed 1/1000, server at 1/2000; no walsender streams from it)"
	if !a.sourceStalled || len(a.problems) != 1 || a.problems[0] != want {
		t.Fatalf("after the timeout: %v %q\nwant %q", a.sourceStalled, a.problems, want)
	}
	if a := at(62*time.Second, func(o *observation) { o.slot.ConfirmedLSN += 8 }); a.sourceStalled {
		t.Fatal("still stalled after the slot moved")
	}
	// A long snapshot holds the slot's position but reads rows.
	for d := 70 * time.Second; d < 200*time.Second; d += 10 * time.Second {
		if a := at(d, func(o *observation) { o.snapshotRows += 1000 }); a.sourceStalled {
			t.Fatalf("stalled at %s while a snapshot reads rows", d)
		}
	}
	if a := at(200*time.Second, func(o *observation) { o.slot.ConfirmedLSN = o.slot.CurrentLSN }); a.sourceStalled {
		t.Fatal("stalled with nothing pending")
	}
}

func TestAssessMappingStates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	streaming, paused, failing, stalled, snap := mapping("a"), mapping("b"), mapping("c"), mapping("d"), mapping("e")
	msg := "connect to PostgreSQL: dial tcp 127.0.0.1:1: connect: connection refused"
	paused.stats.Paused.Store(true)
	paused.stats.LastError.Store(&msg)
	mismatch := "mapping c: column x: the target cannot take it; run ALTER TABLE"
	failing.stats.Paused.Store(true)
	failing.stats.SchemaMismatch.Store(true)
	failing.stats.LastError.Store(&mismatch)
	snap.Source = "public.big"
	sinks := map[string]*progress{}
	o := observation{now: t0, slotName: "s1", slot: healthySlot(), stall: time.Minute,
		mappings: []watched{streaming, paused, failing, stalled, snap}, lag: map[string]int64{"a": 0, "d": 7}}
	assess(o, &progress{}, sinks)
	streaming.stats.Applied.Add(5)
	o.now = t0.Add(2 * time.Minute)
	a := assess(o, &progress{}, sinks)
	want := map[string]mappingView{
		"a": {State: "streaming", LagEvents: 0},
		"b": {State: "paused", Reason: msg, LagEvents: -1},
		"c": {State: "failing", Reason: mismatch, LagEvents: -1},
		"d": {State: "stalled", Reason: "7 events pending, none applied for 2m0s", LagEvents: 7},
		"e": {State: "snapshotting", LagEvents: -1},
	}
	if !reflect.DeepEqual(a.mappings, want) {
		t.Errorf("states\n%+v\nwant\n%+v", a.mappings, want)
	}
	wantProblems := []string{
		"mapping b paused: store accounts: " + msg,
		"mapping c failing: " + mismatch,
		"mapping d stalled: 7 events pending, none applied for 2m0s",
	}
	if !reflect.DeepEqual(a.problems, wantProblems) {
		t.Errorf("problems\n%q\nwant\n%q", a.problems, wantProblems)
	}
	o.mappings = o.mappings[:1]
	assess(o, &progress{}, sinks)
	if len(sinks) != 1 {
		t.Errorf("progress of removed mappings kept: %v", sinks)
	}
}

func TestStuckLoops(t *testing.T) {
	m := &monitor{cfg: &Config{MonitorInterval: 5 * time.Second}, ticks: map[string]time.Time{}}
	t0 := time.Now()
	m.ticks["reconcile"] = t0.Add(-45 * time.Second)
	m.ticks["monitor"] = t0.Add(-time.Second)
	got := m.stuckLoops(t0, m.healthLimit())
	if want := []string{"reconcile loop has not ticked for 45s"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("stuck %q, want %q", got, want)
	}
}

func TestStoreAddrs(t *testing.T) {
	for raw, want := range map[string][]string{
		"postgres://u:p@db.example:6543/service":     {"db.example:6543"},
		"postgresql://u@db/service?sslmode=require":  {"db:5432"},
		"cassandra://c1,c2:9142/ks":                  {"c1:9042", "c2:9142"},
		"postgres:///service?host=/var/run/postgres": nil,
	} {
		if got := storeAddrs(raw); !reflect.DeepEqual(got, want) {
			t.Errorf("storeAddrs(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestLSNText(t *testing.T) {
	if got := lsnText(0x16_B374_D848); got != "16/B374D848" {
		t.Fatal(got)
	}
	if got := lsnText(30836856); !strings.HasPrefix(got, "0/") || got != "0/1D68878" {
		t.Fatal(got)
	}
}

// The source's lag is the delay of the newest commit or heartbeat, plus the
// time a heartbeat is overdue: near zero while idle, growing when stuck.
func TestSourceLag(t *testing.T) {
	t0 := time.UnixMilli(1_000_000)
	ms := func(d time.Duration) int64 { return t0.Add(d).UnixMilli() }
	hb := 500 * time.Millisecond
	cases := []struct {
		name                        string
		commit, heartbeat, received int64
		now                         time.Time
		want                        float64
	}{
		{"nothing received", 0, 0, 0, t0, 0},
		{"idle, heartbeats arrive", ms(-time.Hour), ms(0), ms(50 * time.Millisecond), t0.Add(400 * time.Millisecond), 0.05},
		{"heartbeat overdue", ms(-time.Hour), ms(0), ms(50 * time.Millisecond), t0.Add(3 * time.Second), 2.5},
		{"backlog", ms(-time.Minute), ms(-2 * time.Minute), ms(0), t0.Add(100 * time.Millisecond), 60},
	}
	for _, c := range cases {
		if got := sourceLag(c.commit, c.heartbeat, c.received, hb, c.now); got < c.want-0.001 || got > c.want+0.001 {
			t.Errorf("%s: lag %.3f, want %.3f", c.name, got, c.want)
		}
	}
}
