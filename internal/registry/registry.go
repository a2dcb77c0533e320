// Package registry is the model of the mapping registry that every scoop
// instance shares: a stored mapping with its replay generation, the names
// derived from it (consumer group), and the plan that makes the registry
// match a mappings file. It is pure; where the registry is kept is a Store
// (connectors/postgres keeps it in the monolith).
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/scoop-cdc/scoop/pipeline"
)

// Mapping is a mapping as stored, with its replay generation.
type Mapping struct {
	pipeline.Mapping
	// Generation grows with each replay; the consumer group and the sink's
	// stored progress are per generation.
	Generation int       `json:"generation"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// GroupID is the consumer group of the mapping's current generation.
func (m *Mapping) GroupID(prefix string) string {
	if m.Generation == 0 {
		return prefix + "." + m.Name
	}
	return fmt.Sprintf("%s.%s.g%d", prefix, m.Name, m.Generation)
}

// Step is one change apply would make.
type Step struct {
	Action  string // add, change, remove, keep
	Mapping string
	Detail  string
}

func (s Step) String() string {
	if s.Detail != "" {
		return fmt.Sprintf("%-6s %s (%s)", s.Action, s.Mapping, s.Detail)
	}
	return fmt.Sprintf("%-6s %s", s.Action, s.Mapping)
}

// Plan compares the registry with a validated file.
func Plan(current []Mapping, file *pipeline.File) []Step {
	have := map[string]pipeline.Mapping{}
	for _, m := range current {
		have[m.Name] = m.Mapping
	}
	var steps []Step
	want := map[string]bool{}
	for _, m := range file.Mappings {
		want[m.Name] = true
		old, ok := have[m.Name]
		switch {
		case !ok:
			steps = append(steps, Step{"add", m.Name, m.Source + " -> " + m.Store + "." + m.TargetTable()})
		case !sameMapping(old, m):
			steps = append(steps, Step{"change", m.Name, diffMapping(old, m)})
		default:
			steps = append(steps, Step{"keep", m.Name, ""})
		}
	}
	for _, m := range current {
		if !want[m.Name] {
			steps = append(steps, Step{"remove", m.Name, m.Source + " -> " + m.Store + "." + m.TargetTable()})
		}
	}
	return steps
}

func sameMapping(a, b pipeline.Mapping) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func diffMapping(a, b pipeline.Mapping) string {
	var am, bm map[string]any
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	json.Unmarshal(x, &am)
	json.Unmarshal(y, &bm)
	var parts []string
	for k, v := range bm {
		if fmt.Sprint(am[k]) != fmt.Sprint(v) {
			parts = append(parts, k)
		}
	}
	for k := range am {
		if _, ok := bm[k]; !ok {
			parts = append(parts, k)
		}
	}
	sort.Strings(parts)
	return fmt.Sprintf("fields %v", parts)
}

// Store keeps the registry of one deployment. Every method is safe to call
// from several instances at once; Apply and Remove change it atomically.
type Store interface {
	// Version grows with every change; daemons poll it.
	Version(ctx context.Context) (int64, error)
	// List returns the mappings and the version they belong to.
	List(ctx context.Context) ([]Mapping, int64, error)
	// Apply makes the registry hold exactly the file's mappings, all or
	// nothing, and returns the steps taken (scoop mappings apply).
	Apply(ctx context.Context, file *pipeline.File) ([]Step, error)
	// ApplyAtStart is Apply for scoop run's SCOOP_MAPPINGS_FILE: it applies
	// only when FileState.Allows the file, else returns ErrFileDiffers.
	ApplyAtStart(ctx context.Context, file *pipeline.File) ([]Step, error)
	// Get returns one mapping (an error naming it when it is unknown).
	Get(ctx context.Context, name string) (*Mapping, error)
	// Remove deletes one mapping.
	Remove(ctx context.Context, name string) error
	// NextGeneration starts a new generation of a mapping (a replay): prepare
	// runs with it before it is stored, so its consumer group can be
	// positioned before any instance joins it.
	NextGeneration(ctx context.Context, name string, prepare func(next *Mapping) error) (*Mapping, error)
	Close()
}

// FileState says which mappings file the registry was last applied from.
type FileState struct {
	// Digest is pipeline.File.Digest of the file last applied; "" when no
	// file was ever applied, Edited when the registry was changed by hand
	// (scoop mappings remove) since.
	Digest    string
	AppliedAt time.Time
}

// Edited is the FileState.Digest of a registry changed by hand.
const Edited = "edited"

// ErrFileDiffers refuses a scoop run whose SCOOP_MAPPINGS_FILE is not the
// file the registry was last applied from.
var ErrFileDiffers = errors.New("the mappings file is not the one the registry was last applied from")

// Allows says whether scoop run may apply the file with this digest at
// start: when no file was ever applied, or this very file was. Any other
// file would revert what a newer file (or a change by hand) did, as an
// instance of the previous release restarting during a rolling deploy
// would: only scoop mappings apply changes the registry to another file.
func (st FileState) Allows(digest string) error {
	if st.Digest == "" || st.Digest == digest {
		return nil
	}
	last := "applied from a file with digest " + short(st.Digest)
	if st.Digest == Edited {
		last = "changed by scoop mappings remove"
	}
	return fmt.Errorf("%w: this file has digest %s, the registry was last %s at %s; scoop run never reverts the registry (fix: run scoop mappings apply -f FILE to make the registry hold this file, or unset SCOOP_MAPPINGS_FILE to run with the registry as it is)",
		ErrFileDiffers, short(digest), last, st.AppliedAt.UTC().Format(time.RFC3339))
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}
