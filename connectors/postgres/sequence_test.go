package postgres_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/scoop-cdc/scoop/connectors/postgres"
	"github.com/scoop-cdc/scoop/internal/testenv"
	"github.com/scoop-cdc/scoop/pipeline"
	"github.com/scoop-cdc/scoop/schema"
)

// source.sequence is Debezium's ["<last committed LSN>","<LSN>"]: snapshot
// rows have no last commit, and each streamed change names the commit LSN
// of the transaction received before its own.
func TestSourceSequence(t *testing.T) {
	tbl, name := newTable(t, `CREATE TABLE %s (id int PRIMARY KEY)`)
	c := testenv.Conn(t, "monolith")
	q := schema.QuoteIdent(name)
	testenv.Exec(t, c, fmt.Sprintf(`INSERT INTO %s VALUES (1)`, q))
	prefix, slot := testenv.Name("p"), testenv.Name("s")
	testenv.DropSlot(t, slot)
	startSource(t, prefix, slot, []postgres.TableName{tbl}, nil)
	topic := pipeline.TopicFor(prefix, "public", name)
	waitEvents(t, topic, 1)
	for id := 2; id <= 4; id++ {
		testenv.Exec(t, c, fmt.Sprintf(`INSERT INTO %s VALUES (%d)`, q, id))
	}
	type seqEvent struct {
		Op     string `json:"op"`
		Source struct {
			Sequence  string `json:"sequence"`
			LSN       uint64 `json:"lsn"`
			CommitLSN uint64 `json:"commit_lsn"`
		} `json:"source"`
		seq []*string
	}
	var evs []seqEvent
	for _, m := range testenv.ReadTopic(t, topic, 4, 60*time.Second) {
		var e seqEvent
		if err := json.Unmarshal(m.Value, &e); err != nil {
			t.Fatalf("bad event %s: %v", m.Value, err)
		}
		if err := json.Unmarshal([]byte(e.Source.Sequence), &e.seq); err != nil || len(e.seq) != 2 || e.seq[1] == nil {
			t.Fatalf("sequence %q is not a JSON array of two strings: %v", e.Source.Sequence, err)
		}
		if want := fmt.Sprint(e.Source.LSN); *e.seq[1] != want {
			t.Errorf("sequence %s: second element is not the lsn %s", e.Source.Sequence, want)
		}
		evs = append(evs, e)
	}
	if len(evs) != 4 {
		t.Fatalf("got %d events, want 4", len(evs))
	}
	sort.Slice(evs, func(i, j int) bool {
		return evs[i].Op == "r" || (evs[j].Op != "r" && evs[i].Source.CommitLSN < evs[j].Source.CommitLSN)
	})
	if evs[0].Op != "r" || evs[0].seq[0] != nil {
		t.Errorf("snapshot row: op %s, sequence %s (want no last commit)", evs[0].Op, evs[0].Source.Sequence)
	}
	for i := 2; i < 4; i++ {
		want := fmt.Sprint(evs[i-1].Source.CommitLSN)
		if got := evs[i].seq[0]; got == nil || *got != want {
			t.Errorf("insert %d: sequence %s, want the last commit %s (the insert before it)", i+1, evs[i].Source.Sequence, want)
		}
	}
}
