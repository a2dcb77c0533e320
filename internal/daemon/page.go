package daemon

import (
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"
)

// The live status page (GET /): the slot, readiness with its reasons, one
// row per mapping and a lag chart over the monitor's recent rounds. It is
// rendered on the server, refreshes itself every few seconds and loads
// nothing from elsewhere, so it works offline and without JavaScript.

// lagSample is one monitor round's lags, for the chart.
type lagSample struct {
	at       time.Time
	source   float64
	mappings map[string]float64
}

// historyWindow and historyMax bound the chart's memory: at most the last
// ten minutes, at most 600 rounds.
const (
	historyWindow = 10 * time.Minute
	historyMax    = 600
)

// record adds a round's lags to the history, dropping what is too old.
func (m *monitor) record(now time.Time, ws []watched) {
	s := lagSample{at: now, source: m.sourceLag(now), mappings: map[string]float64{}}
	for _, w := range ws {
		s.mappings[w.name()] = m.mappingLag(w.name(), w.stats, m.lagEvents(w.name()), now)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.history = append(m.history, s)
	drop := 0
	for drop < len(m.history) && (len(m.history)-drop > historyMax || now.Sub(m.history[drop].at) > historyWindow) {
		drop++
	}
	m.history = append(m.history[:0], m.history[drop:]...)
}

func (m *monitor) lagHistory() []lagSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]lagSample(nil), m.history...)
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"}

// lagChart draws the history as an SVG line per mapping and one for the
// source.
func lagChart(hist []lagSample) template.HTML {
	const w, h, pad = 800.0, 220.0, 40.0
	if len(hist) < 2 {
		return template.HTML(`<p id="chart-empty">collecting lag samples…</p>`)
	}
	names := map[string]bool{}
	top := 1.0
	for _, s := range hist {
		top = max(top, s.source)
		for n, v := range s.mappings {
			names[n] = true
			top = max(top, v)
		}
	}
	series := []string{"source"}
	var sorted []string
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	series = append(series, sorted...)
	t0, t1 := hist[0].at, hist[len(hist)-1].at
	span := max(t1.Sub(t0).Seconds(), 1)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="lag-chart" xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="lag in seconds">`, w, h+20*float64(len(series)), w, h+20*float64(len(series)))
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/><line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, pad, pad/2, pad, h-pad, pad, h-pad, w-10, h-pad)
	fmt.Fprintf(&b, `<text x="2" y="%.0f" font-size="11">%.1fs</text><text x="2" y="%.0f" font-size="11">0s</text>`, pad/2+4, top, h-pad)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11">-%s</text><text x="%.0f" y="%.0f" font-size="11" text-anchor="end">now</text>`, pad, h-pad+14, time.Duration(span*float64(time.Second)).Round(time.Second), w-10, h-pad+14)
	for i, name := range series {
		color := palette[i%len(palette)]
		var pts []string
		for _, s := range hist {
			v, ok := s.source, true
			if name != "source" || i > 0 {
				v, ok = s.mappings[name]
			}
			if !ok {
				continue
			}
			x := pad + (w-pad-10)*s.at.Sub(t0).Seconds()/span
			y := (h - pad) - (h-pad-pad/2)*v/top
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		fmt.Fprintf(&b, `<polyline data-series="%s" fill="none" stroke="%s" stroke-width="2" points="%s"/>`, template.HTMLEscapeString(name), color, strings.Join(pts, " "))
		ly := h + 20*float64(i) + 4
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.0f" font-size="12">%s</text>`, pad, ly, color, pad+18, ly+11, template.HTMLEscapeString(name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

type pageMapping struct {
	Name, State, Reason, Store, Source string
	Progress                           string // of a snapshot: "45% of ~1000 rows, ETA 12s"
	Lag, Rate                          float64
	Pending                            string
	Applied, DeadLetters               uint64
}

type pageData struct {
	Slot, Publication                     string
	Ready                                 bool
	Problems                              []string
	Current, Received, Confirmed, Restart string
	WALStatus                             string
	RetainedMB, SourceLag                 float64
	LimitMB                               int
	SlotRead                              bool
	Mappings                              []pageMapping
	Chart                                 template.HTML
	Refresh                               int
	Generated                             string
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{{.Refresh}}">
<title>scoop {{.Slot}}</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px} h2{font-size:16px;margin-top:24px}
.ok{color:#1a7f37} .bad{color:#cf222e}
table{border-collapse:collapse} th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right} .state{font-weight:600}
.streaming{color:#1a7f37} .snapshotting{color:#0969da} .paused,.stalled{color:#9a6700} .failing{color:#cf222e}
.reason{color:#555;max-width:420px}
</style></head>
<body>
<h1>scoop · slot {{.Slot}} · <span id="ready" class="{{if .Ready}}ok{{else}}bad{{end}}">{{if .Ready}}ready{{else}}not ready{{end}}</span></h1>
{{if .Problems}}<ul id="problems">{{range .Problems}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p id="slot">{{if .SlotRead}}server {{.Current}} · received {{.Received}} · confirmed {{.Confirmed}} · restart {{.Restart}}<br>
retained WAL <b id="retained">{{printf "%.1f" .RetainedMB}} MB</b>{{if .LimitMB}} (limit {{.LimitMB}} MB){{end}} · wal_status <b id="wal-status">{{.WALStatus}}</b> · source lag {{printf "%.1f" .SourceLag}}s{{else}}slot not read yet{{end}}</p>
<h2>Mappings</h2>
<table id="mappings"><tr><th>mapping</th><th>state</th><th>lag</th><th>pending</th><th>rate</th><th>applied</th><th>dead letters</th><th>store</th><th>source</th><th>reason</th></tr>
{{range .Mappings}}<tr data-mapping="{{.Name}}"><td>{{.Name}}</td><td class="state {{.State}}">{{.State}}</td><td class="num">{{printf "%.1f" .Lag}}s</td><td class="num">{{.Pending}}</td><td class="num">{{printf "%.1f" .Rate}}/s</td><td class="num">{{.Applied}}</td><td class="num">{{.DeadLetters}}</td><td>{{.Store}}</td><td>{{.Source}}</td><td class="reason">{{with .Progress}}<span class="progress">{{.}}</span> {{end}}{{.Reason}}</td></tr>
{{end}}</table>
<h2>Lag (seconds)</h2>
{{.Chart}}
<p style="color:#777">{{.Generated}} · refreshes every {{.Refresh}}s · <a href="/metrics">metrics</a></p>
</body></html>
`))

// page serves the live status page.
func (a *admin) page(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	o, _, ran := a.mon.view()
	problems := a.notReady()
	d := pageData{Slot: a.cfg.Slot, Publication: a.cfg.Publication, Ready: len(problems) == 0, Problems: problems,
		Received: lsnText(a.stats.ReceivedLSN.Load()), SourceLag: a.mon.sourceLag(now), LimitMB: a.cfg.MaxRetainedWALMB,
		Chart: lagChart(a.mon.lagHistory()), Refresh: max(2, int(a.cfg.MonitorInterval/time.Second)), Generated: now.UTC().Format(time.RFC3339)}
	if ran && o.slotErr == nil && o.slot.Exists {
		d.SlotRead = true
		d.Current, d.Confirmed, d.Restart = lsnText(o.slot.CurrentLSN), lsnText(o.slot.ConfirmedLSN), lsnText(o.slot.RestartLSN)
		d.WALStatus, d.RetainedMB = o.slot.WALStatus, mb(o.slot.RetainedWAL())
	}
	for _, wt := range a.watched() {
		ms := map[string]any{}
		a.mon.addMappingStatus(ms, wt)
		pm := pageMapping{Name: wt.name(), Store: wt.target(), Source: wt.from(), State: ms["state"].(string),
			Lag: ms["lag_seconds"].(float64), Rate: ms["throughput"].(float64), Applied: wt.stats.Applied.Load(), DeadLetters: wt.stats.DeadLetters.Load(), Pending: "?"}
		if snap, ok := ms["snapshot"].(map[string]any); ok {
			pm.Progress = fmt.Sprintf("%d rows read", snap["rows"])
			if pc, ok := snap["percent"].(float64); ok {
				pm.Progress = fmt.Sprintf("%.0f%% of ~%d rows", pc, snap["estimated_rows"])
			}
			if eta, ok := snap["eta_seconds"].(float64); ok {
				pm.Progress += ", ETA " + (time.Duration(eta) * time.Second).String()
			}
		}
		if r, ok := ms["reason"].(string); ok {
			pm.Reason = r
		}
		if n := ms["lag_events"].(int64); n >= 0 {
			pm.Pending = fmt.Sprint(n)
		}
		d.Mappings = append(d.Mappings, pm)
	}
	sort.Slice(d.Mappings, func(i, j int) bool { return d.Mappings[i].Name < d.Mappings[j].Name })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'")
	if err := pageTemplate.Execute(w, d); err != nil {
		a.mon.log.Warn("render the status page", "error", err)
	}
}
