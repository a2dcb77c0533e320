package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scoop-cdc/scoop/connectors/postgres"
)

// statusCommand asks a running daemon through its admin API (/status) and
// prints a table, or the JSON document itself with --json; --watch
// refreshes every --interval until interrupted.
func statusCommand(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("scoop status", flag.ContinueOnError)
	fs.SetOutput(stdout)
	asJSON := fs.Bool("json", false, "print the daemon's status document (JSON) as it is")
	watch := fs.Bool("watch", false, "refresh until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "refresh period with --watch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("scoop status: unexpected argument %q (flags: --json, --watch, --interval)", fs.Arg(0))
	}
	if *interval < 100*time.Millisecond {
		return fmt.Errorf("scoop status: --interval=%s: must be at least 100ms", *interval)
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	show := func() error {
		body, err := fetchStatus(ctx, cfg.AdminAddr, cfg.AdminToken)
		if err != nil {
			return err
		}
		body, ownersNote := withOwners(ctx, cfg.SourceURL, cfg.Slot, body)
		if *asJSON {
			var v any
			if err := json.Unmarshal(body, &v); err != nil {
				return fmt.Errorf("scoop status: read the daemon's answer: %w", err)
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		}
		var doc statusDoc
		if err := json.Unmarshal(body, &doc); err != nil {
			return fmt.Errorf("scoop status: read the daemon's answer: %w", err)
		}
		if err := printStatus(stdout, &doc); err != nil {
			return err
		}
		printOwners(stdout, &doc, ownersNote)
		return nil
	}
	if !*watch {
		return show()
	}
	clear := isTerminal(stdout)
	for {
		if clear {
			fmt.Fprint(stdout, "\033[H\033[2J")
		} else {
			fmt.Fprintf(stdout, "--- %s\n", time.Now().UTC().Format(time.RFC3339))
		}
		if err := show(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Keep watching through a restart of the daemon.
			fmt.Fprintf(stdout, "%v\n", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

func fetchStatus(ctx context.Context, addr, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, fmt.Errorf("scoop status: SCOOP_ADMIN_ADDR=%s: %w", addr, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no scoop answering on SCOOP_ADMIN_ADDR=%s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("scoop status: read the daemon's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scoop status: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// statusDoc is the part of the daemon's /status document the table shows
// (docs/operations.md describes every member).
type statusDoc struct {
	Slot        string   `json:"slot"`
	Publication string   `json:"publication"`
	Leader      bool     `json:"leader"`
	Ready       *bool    `json:"ready"`
	Problems    []string `json:"problems"`
	Source      struct {
		ReceivedLSN   string  `json:"received_lsn"`
		AckedLSN      string  `json:"acked_lsn"`
		CurrentLSN    string  `json:"current_lsn"`
		RestartLSN    string  `json:"restart_lsn"`
		ConfirmedLSN  string  `json:"confirmed_lsn"`
		WALStatus     string  `json:"wal_status"`
		RetainedWALMB float64 `json:"retained_wal_mb"`
		MaxRetainedMB int     `json:"max_retained_mb"`
		LagSeconds    float64 `json:"lag_seconds"`
		Active        bool    `json:"active"`
		SlotExists    bool    `json:"slot_exists"`
		Error         string  `json:"error"`
		CheckedAt     string  `json:"checked_at"`
	} `json:"source"`
	Mappings map[string]struct {
		Source      string  `json:"source"`
		Store       string  `json:"store"`
		Flow        string  `json:"flow"`    // "reverse" for <mapping>:reverse
		Mapping     string  `json:"mapping"` // of a reverse flow
		State       string  `json:"state"`
		Reason      string  `json:"reason"`
		LagSeconds  float64 `json:"lag_seconds"`
		LagEvents   int64   `json:"lag_events"`
		Throughput  float64 `json:"throughput"`
		Applied     uint64  `json:"applied"`
		DeadLetters uint64  `json:"dead_letters"`
		Owner       string  `json:"owner"`
		FlippedAt   string  `json:"flipped_at"`
		Snapshot    *struct {
			Rows       int64    `json:"rows"`
			Estimated  int64    `json:"estimated_rows"`
			Percent    *float64 `json:"percent"`
			ETASeconds *float64 `json:"eta_seconds"`
		} `json:"snapshot"`
	} `json:"mappings"`
}

// printStatus writes the header (slot, LSNs, WAL, readiness) and one line
// per mapping.
func printStatus(w io.Writer, doc *statusDoc) error {
	if doc.Ready == nil {
		return errors.New("scoop status: the daemon's answer has no readiness (is it an older scoop? try --json)")
	}
	s := doc.Source
	role := "standby (another instance streams from the slot)"
	if doc.Leader {
		role = "leader (this instance streams from the slot)"
	}
	fmt.Fprintf(w, "slot %s  publication %s  %s\n", doc.Slot, doc.Publication, role)
	switch {
	case s.CheckedAt == "":
		fmt.Fprintf(w, "  received %s  acked %s  (slot not checked yet)\n", s.ReceivedLSN, s.AckedLSN)
	case s.Error != "":
		fmt.Fprintf(w, "  received %s  acked %s  slot unreadable: %s\n", s.ReceivedLSN, s.AckedLSN, s.Error)
	case !s.SlotExists:
		fmt.Fprintf(w, "  received %s  acked %s  slot does not exist yet\n", s.ReceivedLSN, s.AckedLSN)
	default:
		walsender := "walsender active"
		if !s.Active {
			walsender = "no walsender"
		}
		limit := ""
		if s.MaxRetainedMB > 0 {
			limit = fmt.Sprintf(" (limit %d MB)", s.MaxRetainedMB)
		}
		fmt.Fprintf(w, "  server %s  received %s  confirmed %s  restart %s\n", s.CurrentLSN, s.ReceivedLSN, s.ConfirmedLSN, s.RestartLSN)
		fmt.Fprintf(w, "  retained WAL %.1f MB%s  wal_status %s  %s  source lag %.1fs\n", s.RetainedWALMB, limit, s.WALStatus, walsender, s.LagSeconds)
	}
	if *doc.Ready {
		fmt.Fprintln(w, "ready")
	} else {
		fmt.Fprintln(w, "NOT READY:")
		for _, p := range doc.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
	fmt.Fprintln(w)
	names := make([]string, 0, len(doc.Mappings))
	for n := range doc.Mappings {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAPPING\tSTATE\tLAG\tPENDING\tRATE\tAPPLIED\tDEAD LETTERS\tOWNER\tSTORE\tSOURCE\tREASON")
	for _, n := range names {
		m := doc.Mappings[n]
		pending := "?"
		if m.LagEvents >= 0 {
			pending = fmt.Sprint(m.LagEvents)
		}
		state := m.State
		if s := m.Snapshot; s != nil && m.State == "snapshotting" {
			state += " " + snapshotProgress(s.Rows, s.Estimated, s.Percent, s.ETASeconds)
		}
		owner := m.Owner
		if owner == "" {
			owner = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1fs\t%s\t%.1f/s\t%d\t%d\t%s\t%s\t%s\t%s\n", n, state, m.LagSeconds, pending, m.Throughput, m.Applied, m.DeadLetters, owner, m.Store, m.Source, oneLine(m.Reason, 160))
	}
	return tw.Flush()
}

// snapshotProgress is "45% ETA 1m20s", or "12000 rows" when the table's
// size is unknown (never analysed).
func snapshotProgress(rows, estimated int64, percent, eta *float64) string {
	if percent == nil {
		return fmt.Sprintf("%d rows (size unknown)", rows)
	}
	out := fmt.Sprintf("%.0f%% of ~%d rows", *percent, estimated)
	if eta != nil {
		out += " ETA " + (time.Duration(*eta) * time.Second).String()
	}
	return out
}

// oneLine keeps a reason on its table line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// withOwners adds to each mapping of the daemon's status document who owns
// its table ("owner": monolith or service, and "flipped_at" once `scoop
// mappings flip` ran), read from the monolith's scoop.owners. When they
// cannot be read, the document says why ("owners_error") and so does the
// note returned.
func withOwners(ctx context.Context, sourceURL, slot string, body []byte) ([]byte, string) {
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return body, "" // the caller reports the document itself
	}
	owners, note := map[string]postgres.Ownership{}, ""
	if sourceURL == "" {
		note = "owners not read: SCOOP_SOURCE_URL is not set"
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		if owners, err = postgres.Owners(ctx, sourceURL, slot); err != nil {
			note = "owners not read: " + err.Error()
		}
	}
	if note != "" {
		doc["owners_error"] = note
		if out, err := json.Marshal(doc); err == nil {
			return out, note
		}
		return body, note
	}
	ms, _ := doc["mappings"].(map[string]any)
	for name, v := range ms {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		// A reverse flow's owner is its mapping's.
		if base, ok := m["mapping"].(string); ok && m["flow"] == "reverse" {
			name = base
		}
		m["owner"] = ownerOf(owners, name)
		if o, ok := owners[name]; ok {
			m["flipped_at"] = o.ChangedAt.UTC().Format(time.RFC3339)
		}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return body, ""
	}
	return out, ""
}

// printOwners names, under the table, the mappings whose table the service
// owns (their monolith table is fenced), or why owners are unknown.
func printOwners(w io.Writer, doc *statusDoc, note string) {
	if note != "" {
		fmt.Fprintln(w, note)
		return
	}
	names := make([]string, 0, len(doc.Mappings))
	for n, m := range doc.Mappings {
		if m.Owner == postgres.OwnerService && m.Flow != "reverse" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "owner of %s: service (flipped at %s; the monolith table is fenced; undo: scoop mappings flip %s --back)\n", n, doc.Mappings[n].FlippedAt, n)
	}
}
