package pipeline

import (
	"strings"
	"testing"
)

// Default topic names are names Kafka accepts: other characters become _
// (one per character, as Debezium does), cut at 249.
func TestTopicFor(t *testing.T) {
	cases := []struct{ prefix, schema, table, want string }{
		{"scoop", "public", "users", "scoop.public.users"},
		{"scoop", "public", `We"ird; Tbl ☃`, "scoop.public.We_ird__Tbl__"},
		{"scoop", "Sales-EU", "ordér_2", "scoop.Sales-EU.ord_r_2"},
		{"scoop", "public", strings.Repeat("x", 300), "scoop.public." + strings.Repeat("x", 249-len("scoop.public."))},
	}
	for _, c := range cases {
		if got := TopicFor(c.prefix, c.schema, c.table); got != c.want {
			t.Errorf("TopicFor(%q, %q, %q) = %q, want %q", c.prefix, c.schema, c.table, got, c.want)
		}
	}
}

// An explicit topic Kafka would refuse is refused up front, naming the
// field.
func TestValidateTopic(t *testing.T) {
	stores := map[string]string{"accounts": "postgres://x"}
	cases := []struct{ topic, want string }{
		{"orders events", `mapping m: field topic: "orders events" has a character Kafka refuses in topic names (' ') (fix: use at most 249 ASCII letters, digits, '.', '_' and '-', or leave topic out for <prefix>.<schema>.<table>)`},
		{"..", `mapping m: field topic: Kafka refuses ".." as a topic name (fix:`},
		{strings.Repeat("t", 250), `mapping m: field topic: "` + strings.Repeat("t", 250) + `" is 250 characters long; Kafka allows 249 at most (fix:`},
	}
	for _, c := range cases {
		body := "mappings:\n  - name: m\n    source: public.t\n    store: accounts\n    topic: '" + c.topic + "'\n"
		_, err := ParseFile(strings.NewReader(body), stores)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("topic %q: got %v\nwant %s", c.topic, err, c.want)
		}
	}
	ok := "mappings:\n  - name: m\n    source: public.t\n    store: accounts\n    topic: " + strings.Repeat("t", 249) + "\n"
	if _, err := ParseFile(strings.NewReader(ok), stores); err != nil {
		t.Fatalf("a 249-character topic: %v", err)
	}
}

// Two tables on one topic, or one table on two, are refused naming both
// mappings.
func TestCheckTopics(t *testing.T) {
	cases := []struct {
		name     string
		mappings []Mapping
		want     string
	}{
		{"default names meet", []Mapping{{Name: "a", Source: "public.a b"}, {Name: "b", Source: "public.a_b"}},
			`mapping b: field topic: mapping a (table public.a b) and mapping b (table public.a_b) would both publish to topic "p.public.a_b" (fix: set topic: to a distinct name in one of the mappings`},
		{"explicit topic on another table's", []Mapping{{Name: "a", Source: "public.x"}, {Name: "b", Source: "public.y", Topic: "p.public.x"}},
			`mapping b: field topic: mapping a (table public.x) and mapping b (table public.y) would both publish to topic "p.public.x"`},
		{"dot and underscore", []Mapping{{Name: "a", Source: "public.x", Topic: "ev.x"}, {Name: "b", Source: "public.y", Topic: "ev_x"}},
			`mapping b: field topic: topic "ev_x" of mapping b (table public.y) collides in Kafka with topic "ev.x" of mapping a (table public.x): they differ only in '.' and '_'`},
		{"one table, two topics", []Mapping{{Name: "a", Source: "public.x"}, {Name: "b", Source: "public.x", Topic: "other"}},
			`mapping b: field topic: mappings a and b read the same table public.x but name different topics "p.public.x" and "other" (fix: give both mappings the same topic, or leave it out of both)`},
	}
	for _, c := range cases {
		err := CheckTopics("p", c.mappings)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "invalid mappings:\n") {
			t.Errorf("%s: got %v\nwant %s", c.name, err, c.want)
		}
	}
	same := []Mapping{{Name: "a", Source: "public.x"}, {Name: "b", Source: "public.x"}, {Name: "c", Source: "public.y", Topic: "p.public.y"}}
	if err := CheckTopics("p", same); err != nil {
		t.Fatalf("one table in two stores: %v", err)
	}
}

// A Cassandra target that Cassandra would refuse (by default the source
// table's name) is refused up front, naming the field and a name to use.
func TestValidateCassandraTarget(t *testing.T) {
	stores := map[string]string{"orders": "cassandra://127.0.0.1:9042/ks", "accounts": "postgres://x"}
	body := "mappings:\n  - name: m\n    source: 'public.We\"ird; Tbl ☃'\n    store: orders\n"
	_, err := ParseFile(strings.NewReader(body), stores)
	want := `mapping m: field target: "We\"ird; Tbl ☃" is not a Cassandra table name (letters, digits and _ only) (fix: set target: to a name such as we_ird_tbl)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	for _, ok := range []string{
		"mappings:\n  - name: m\n    source: 'public.We\"ird; Tbl ☃'\n    store: orders\n    target: weird_tbl\n",
		"mappings:\n  - name: m\n    source: 'public.We\"ird; Tbl ☃'\n    store: accounts\n",
	} {
		if _, err := ParseFile(strings.NewReader(ok), stores); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
