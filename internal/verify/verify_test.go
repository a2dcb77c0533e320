package verify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"

	"github.com/scoop-cdc/scoop/pipeline"
)

func TestCanonicalEqualForBothSides(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	i32 := int32(5)
	pi32 := &i32
	dec := inf.NewDec(150, 2)
	uuid, _ := gocql.ParseUUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	puuid := &uuid
	for _, c := range []struct {
		typ       string
		src, dst  any // as cassandra.Value returns it, as gocql scans it
		want      string
		wantValid bool
	}{
		{"int", int32(5), &pi32, "5", true},
		{"int", nil, new(*int32), "", false},
		{"decimal", dec, &dec, "1.50", true},
		{"uuid", uuid, &puuid, "6ba7b810-9dad-11d1-80b4-00c04fd430c8", true},
		// Cassandra keeps milliseconds: the source's microseconds are cut.
		{"timestamp", ts, ptrptr(ts.Truncate(time.Millisecond)), "2026-01-02T03:04:05.123Z", true},
		{"date", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), ptrptr(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)), "2026-01-02", true},
		{"blob", []byte{1, 0xab}, &[]byte{1, 0xab}, `\x01ab`, true},
		// An empty list is NULL in Cassandra.
		{"list<text>", []any{}, new([]string), "", false},
		{"list<text>", []any{"a", "b"}, &[]string{"a", "b"}, "[1:a;1:b;]", true},
		{"double", 0.1, ptrptr(0.1), "0.1", true},
	} {
		a, aok := canonical(c.typ, c.src)
		b, bok := canonical(c.typ, c.dst)
		if a != b || aok != bok || a != c.want || aok != c.wantValid {
			t.Errorf("%s: source %q %v, target %q %v, want %q %v", c.typ, a, aok, b, bok, c.want, c.wantValid)
		}
	}
}

func ptrptr[T any](v T) **T {
	p := &v
	return &p
}

func TestKeyText(t *testing.T) {
	k := Key{Names: []string{"id", "region"}, Values: []string{"5", `a"b`}}
	if got := k.String(); got != `{"id":"5","region":"a\"b"}` {
		t.Fatal(got)
	}
}

func TestSourceExprRefusesArrayToNumber(t *testing.T) {
	src := pipeline.Column{Source: "tags", Array: true, BaseType: "_int4", Elem: "int4"}
	dst := pipeline.Column{Name: "tags", SQLType: "bigint", BaseType: "int8"}
	_, err := sourceExpr(src, dst, map[string]string{"tags": "bigint"})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `array column "tags" converted to bigint`) {
		t.Fatal(err)
	}
	// A timestamp converted to text is the event's ISO form.
	e, err := sourceExpr(pipeline.Column{Source: "at", BaseType: "timestamptz"}, pipeline.Column{Name: "at", SQLType: "text", BaseType: "text"}, map[string]string{"at": "text"})
	if err != nil || !strings.Contains(e, `'\1T'`) || !strings.HasSuffix(e, "AS text)") {
		t.Fatal(e, err)
	}
}

func TestLimiterPaces(t *testing.T) {
	l := newLimiter(1000)
	start := time.Now()
	for range 5 {
		if err := l.take(context.Background(), 40); err != nil {
			t.Fatal(err)
		}
	}
	// 200 rows at 1000/s take at least 200 ms.
	if d := time.Since(start); d < 180*time.Millisecond {
		t.Fatalf("200 rows at 1000 rows/s took %s", d)
	}
	if l.total() != 200 {
		t.Fatal(l.total())
	}
}

func TestProgressBar(t *testing.T) {
	for _, c := range []struct {
		n, total int64
		want     string
	}{
		{50, 100, "[##########          ]  50%"},
		{150, 100, "[####################] 100%"}, // the estimate was low
		{5, 0, ""}, // never analysed: no bar
	} {
		if got := bar(c.n, c.total); got != c.want {
			t.Errorf("bar(%d, %d) = %q, want %q", c.n, c.total, got, c.want)
		}
	}
}
