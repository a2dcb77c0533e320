package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/schema"
)

// recorder is a Publisher that remembers what it was given (pure logic of
// the forwarder: which marks may be acknowledged when).
type recorder struct {
	mu      sync.Mutex
	batches [][]Record
	fail    error
}

func (r *recorder) Publish(ctx context.Context, recs []Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.batches = append(r.batches, append([]Record(nil), recs...))
	return nil
}

func (r *recorder) published() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, b := range r.batches {
		n += len(b)
	}
	return n
}

func TestForwardAcksOnlyPublishedMarks(t *testing.T) {
	in := make(chan Item, 100)
	pub := &recorder{}
	var mu sync.Mutex
	var acks []uint64
	var publishedAtAck []int
	ack := func(m uint64) {
		mu.Lock()
		acks = append(acks, m)
		publishedAtAck = append(publishedAtAck, pub.published())
		mu.Unlock()
	}
	rec := func(k string) Item { return Item{Record: &Record{Topic: "t", Key: []byte(k), Value: []byte("v")}} }
	in <- rec("a")
	in <- rec("b")
	in <- Item{Mark: 10}
	in <- rec("c")
	in <- Item{Mark: 20}
	in <- Item{Mark: 15} // never backwards
	close(in)
	if err := Forward(context.Background(), ForwarderConfig{MaxRecords: 2}, in, pub, ack); err != nil {
		t.Fatal(err)
	}
	if len(acks) == 0 || acks[len(acks)-1] != 20 {
		t.Fatalf("acks %v, want last 20", acks)
	}
	for i, m := range acks {
		need := map[uint64]int{10: 2, 20: 3}[m]
		if publishedAtAck[i] < need {
			t.Fatalf("mark %d acknowledged with %d records published, need %d", m, publishedAtAck[i], need)
		}
		if i > 0 && m <= acks[i-1] {
			t.Fatalf("acks not increasing: %v", acks)
		}
	}
}

func TestForwardFailureAcksNothing(t *testing.T) {
	in := make(chan Item, 10)
	in <- Item{Record: &Record{Topic: "t", Key: []byte("k")}}
	in <- Item{Mark: 5}
	close(in)
	pub := &recorder{fail: errors.New("broker down")}
	acked := false
	err := Forward(context.Background(), ForwarderConfig{}, in, pub, func(uint64) { acked = true })
	if err == nil || err.Error() != "publish 1 records: broker down" || acked {
		t.Fatalf("err %v, acked %v", err, acked)
	}
}

func TestForwardBarrier(t *testing.T) {
	in := make(chan Item, 10)
	pub := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Forward(ctx, ForwarderConfig{Linger: time.Hour}, in, pub, func(uint64) {})
	in <- Item{Record: &Record{Topic: "t", Key: []byte("k")}}
	b := make(chan struct{})
	in <- Item{Barrier: b}
	select {
	case <-b:
	case <-time.After(5 * time.Second):
		t.Fatal("barrier not released")
	}
	if pub.published() != 1 {
		t.Fatalf("barrier released before the record was published")
	}
}

// Records that keep coming less than Linger apart are published once the
// batch's first record has waited MaxDelay, not when the batch is full.
func TestForwardMaxDelay(t *testing.T) {
	in := make(chan Item)
	pub := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Forward(ctx, ForwarderConfig{MaxRecords: 100_000, Linger: time.Second, MaxDelay: 20 * time.Millisecond}, in, pub, func(uint64) {})
	start := time.Now()
	for i := 0; pub.published() == 0; i++ {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%d records sent 1 ms apart for 5 s, none published (MaxDelay 20 ms)", i)
		}
		in <- Item{Record: &Record{Topic: "t", Key: []byte("k")}}
		time.Sleep(time.Millisecond) // the source's pace, not a wait for a result
	}
}

func TestDecodeChange(t *testing.T) {
	val := `{"before":null,"after":{"id":1,"name":"x"},"source":{"ts_ms":1,"ts_us":1500,"lsn":77,"commit_lsn":90},"op":"u","unchanged":["big"],"transaction":{"id":"5:90","total_order":6,"data_collection_order":1,"key_order":2}}`
	c, ok, err := DecodeChange([]byte(`{"id":1}`), []byte(val))
	if err != nil || !ok || c.Op != schema.OpUpdate || c.LSN != 77 || c.CommitLSN != 90 || c.Order != 6 || c.KeyOrder != 2 || !c.Unchanged["big"] || c.CommitTime.UnixMicro() != 1500 || string(c.Key["id"]) != "1" {
		t.Fatalf("%+v %v %v", c, ok, err)
	}
	wrapped := `{"schema":{"type":"struct"},"payload":` + val + `}`
	c2, ok, err := DecodeChange([]byte(`{"schema":{},"payload":{"id":1}}`), []byte(wrapped))
	if err != nil || !ok || string(c2.Key["id"]) != "1" || c2.Op != schema.OpUpdate || c2.KeyOrder != 2 {
		t.Fatalf("with schemas: %+v %v", c2, err)
	}
	if _, ok, err := DecodeChange([]byte(`{"id":1}`), nil); ok || err != nil {
		t.Fatal("tombstone must be skipped without error")
	}
	bad := []struct{ key, val, want string }{
		{`{"id":1}`, `{"op":"x","after":{}}`, `decode event value: unknown op "x"`},
		{`{"id":1}`, `not json`, `decode event value: invalid character 'o' in literal null (expecting 'u')`},
		{`{"id":1}`, `{"op":"c"}`, `decode event: op "c" without after`},
		{`{}`, `{"op":"c","after":{}}`, `decode event key: empty key`},
	}
	for _, b := range bad {
		if _, _, err := DecodeChange([]byte(b.key), []byte(b.val)); err == nil || err.Error() != b.want {
			t.Errorf("%s: got %v, want %s", b.val, err, b.want)
		}
	}
}

func TestShape(t *testing.T) {
	m := &Mapping{Name: "u", Columns: Columns{Exclude: []string{"password_hash"}, Rename: map[string]string{"email_address": "email"}}}
	var c Change
	json.Unmarshal([]byte(`{"id":1}`), &c.Key)
	json.Unmarshal([]byte(`{"id":1,"email_address":"a@b","password_hash":"x","bio":"y"}`), &c.After)
	c.Unchanged = map[string]bool{"email_address": true}
	m.Shape(&c)
	b, _ := json.Marshal(c.After)
	if string(b) != `{"bio":"y","email":"a@b","id":1}` || !c.Unchanged["email"] {
		t.Fatalf("shaped %s, unchanged %v", b, c.Unchanged)
	}
}

func TestValidateMappings(t *testing.T) {
	stores := map[string]string{"accounts": "postgres://x"}
	body := `mappings:
  - name: Bad Name
    source: a.b.c
    store: nowhere
    direction: sideways
    conflict: coin-flip
    columns: {include: [a], exclude: [b], rename: {b: x, c: x}, types: {a: money2, b: text}}
  - source: public.t
    store: accounts
  - name: fwd
    source: public.t
    store: accounts
    conflict: service-wins
`
	_, err := ParseFile(strings.NewReader(body), stores)
	want := []string{
		`mapping Bad Name: field name: "Bad Name" is not a valid name (fix: use lower-case letters, digits, _ and -, starting with a letter)`,
		`mapping Bad Name: field source: "a.b.c" is not schema.table (fix: write the table as schema.table, e.g. public.users)`,
		`mapping Bad Name: field store: store "nowhere" has no URL (fix: set SCOOP_STORE_NOWHERE_URL to postgres://... or cassandra://host:port/keyspace)`,
		`mapping Bad Name: field direction: unknown direction "sideways" (fix: use forward or both)`,
		`mapping Bad Name: field conflict: unknown policy "coin-flip" (fix: use last-writer-wins, monolith-wins or service-wins)`,
		`mapping Bad Name: field columns: both include and exclude are set (fix: keep one of them)`,
		`mapping Bad Name: field columns.rename: column "b" is both excluded and renamed (fix: remove it from exclude or from rename)`,
		`mapping Bad Name: field columns.types: column "a": type "money2" cannot be converted to (fix: use one of bigint, boolean, date, double precision, integer, jsonb, numeric, text, timestamptz, uuid)`,
		`mapping Bad Name: field columns.types: column "b" is both excluded and converted (fix: remove it from exclude or from types)`,
		`mapping Bad Name: field columns.rename: columns "b" and "c" are both renamed to "x" (fix: give each target column its own name)`,
		`mapping #2: field name: missing (fix: give every mapping a unique name such as users)`,
		`mapping fwd: field conflict: service-wins applies only with direction: both (a forward mapping has one writer, the monolith) (fix: set direction: both, or remove conflict)`,
	}
	if err == nil || !errors.Is(err, ErrInvalidMappings) {
		t.Fatalf("got %v", err)
	}
	got := strings.Split(err.Error(), "\n")[1:]
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBudget(t *testing.T) {
	b := NewBudget(100)
	ctx := context.Background()
	if err := b.Acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		b.Acquire(ctx, 60) // waits: 120 > 100
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("acquired past the limit")
	case <-time.After(50 * time.Millisecond):
	}
	b.Release(60)
	select {
	case <-got:
	case <-time.After(time.Second):
		t.Fatal("not woken by the release")
	}
	b.Release(60)
	// A record larger than the whole budget passes alone.
	if err := b.Acquire(ctx, 500); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.Acquire(cctx, 1); err != context.DeadlineExceeded {
		t.Fatalf("got %v", err)
	}
}

// TestEventValueConverted: a column that columns.types converted reads its
// events by the monolith's type (a date's days, a timestamp's µs), not by
// the target's.
func TestEventValueConverted(t *testing.T) {
	m := &Mapping{Name: "c", Columns: Columns{Types: map[string]string{"born": "text", "seen": "timestamptz", "days": "text"}}}
	target, err := m.ShapeTarget([]Column{
		{Name: "id", Source: "id", BaseType: "int8", Key: true},
		{Name: "born", Source: "born", BaseType: "date"},
		{Name: "seen", Source: "seen", BaseType: "timestamp"},
		{Name: "days", Source: "days", BaseType: "_date", Array: true, Elem: "date"},
		{Name: "at", Source: "at", BaseType: "time"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{
		"born": {`19782`, `"2024-02-29"`},
		"seen": {`1709210096789000`, `"2024-02-29T12:34:56.789"`},
		"days": {`[0,null]`, `["1970-01-01",null]`},
		"at":   {`60000000`, `"00:01:00"`},
		"id":   {`19782`, `19782`},
	}
	for _, c := range target.Columns {
		got, err := c.EventValue(json.RawMessage(want[c.Name][0]))
		if err != nil || string(got) != want[c.Name][1] {
			t.Errorf("%s (%s, event type %q): got %s %v, want %s", c.Name, c.BaseType, c.EventType, got, err, want[c.Name][1])
		}
	}
}
