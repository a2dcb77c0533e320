package registry

import (
	"strings"
	"testing"

	"github.com/scoop-cdc/scoop/pipeline"
)

func TestGroupIDPerGeneration(t *testing.T) {
	m := Mapping{Mapping: pipeline.Mapping{Name: "users"}}
	if got := m.GroupID("scoop"); got != "scoop.users" {
		t.Fatalf("generation 0: %s", got)
	}
	m.Generation = 3
	if got := m.GroupID("scoop"); got != "scoop.users.g3" {
		t.Fatalf("generation 3: %s", got)
	}
}

func TestPlan(t *testing.T) {
	current := []Mapping{
		{Mapping: pipeline.Mapping{Name: "kept", Source: "public.a", Store: "accounts"}},
		{Mapping: pipeline.Mapping{Name: "changed", Source: "public.b", Store: "accounts"}},
		{Mapping: pipeline.Mapping{Name: "gone", Source: "public.c", Store: "orders"}},
	}
	file := &pipeline.File{Mappings: []pipeline.Mapping{
		{Name: "kept", Source: "public.a", Store: "accounts"},
		{Name: "changed", Source: "public.b", Store: "orders", Target: "bb"},
		{Name: "new", Source: "public.d", Store: "orders"},
	}}
	var got []string
	for _, s := range Plan(current, file) {
		got = append(got, s.String())
	}
	want := []string{
		"keep   kept",
		"change changed (fields [store target])",
		"add    new (public.d -> orders.d)",
		"remove gone (public.c -> orders.c)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
