package registry

import (
	"errors"
	"strings"
	"testing"
	"time"

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

// scoop run applies its file only to a registry no file set yet or set
// from this very file; otherwise it refuses with the fix.
func TestFileStateAllows(t *testing.T) {
	if err := (FileState{}).Allows("abc"); err != nil {
		t.Fatalf("never applied: %v", err)
	}
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	if err := (FileState{Digest: "abc", AppliedAt: at}).Allows("abc"); err != nil {
		t.Fatalf("same file: %v", err)
	}
	err := FileState{Digest: "0123456789abcdef", AppliedAt: at}.Allows("fedcba9876543210")
	want := "the mappings file is not the one the registry was last applied from: this file has digest fedcba987654, the registry was last applied from a file with digest 0123456789ab at 2026-11-26T01:00:00Z; scoop run never reverts the registry (fix: run scoop mappings apply -f FILE to make the registry hold this file, or unset SCOOP_MAPPINGS_FILE to run with the registry as it is)"
	if !errors.Is(err, ErrFileDiffers) || err.Error() != want {
		t.Fatalf("another file:\ngot  %v\nwant %s", err, want)
	}
	err = FileState{Digest: Edited, AppliedAt: at}.Allows("abc")
	if !errors.Is(err, ErrFileDiffers) || !strings.Contains(err.Error(), "the registry was last changed by scoop mappings remove at 2026-11-26T01:00:00Z") {
		t.Fatalf("edited by hand: %v", err)
	}
}
