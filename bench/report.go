package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Meta describes the run for the report: what was run, where, and when.
type Meta struct {
	Command    string   `json:"command"`
	Machine    string   `json:"machine"`
	Started    string   `json:"started"`
	Conditions string   `json:"conditions,omitempty"`
	Notes      []string `json:"notes,omitempty"`
}

// Plot file names written by WriteReport.
const (
	PlotThroughput  = "throughput.svg"
	PlotLatency     = "latency.svg"
	PlotPropagation = "propagation.svg"
	PlotPolicyScale = "policy-scale.svg"
	PlotLeaseScale  = "lease-scale.svg"
)

// nines maps a percentile to its "number of nines" (90 → 1, 99 → 2,
// 99.9 → 3), so the tail gets room on the latency plot; 100 sits at 5.
func nines(q float64) float64 {
	if q >= 100 {
		return 5
	}
	return math.Min(-math.Log10(1-q/100), 5)
}

// Charts builds the report's plots from results; a chart with no data is
// still returned (it says so), so the page always has the same plots.
func Charts(results []*Result) map[string]Chart {
	tp := Chart{Title: "Throughput over time", XLabel: "seconds into the measured period", YLabel: "operations / s"}
	lat := Chart{Title: "Latency by percentile", XLabel: "percentile", YLabel: "ms (log)", LogY: true,
		XTickLabels: map[float64]string{0: "p0", 1: "p90", 2: "p99", 3: "p99.9", 4: "p99.99", 5: "max"}}
	prop := Chart{Title: "Revocation propagation: revoke call → every node rejects (CDF)", XLabel: "ms (log)", YLabel: "fraction of revocations", LogX: true}
	pol := Chart{Title: "Authorize latency vs policies", XLabel: "policies in the set (log)", YLabel: "ms", LogX: true}
	lease := Chart{Title: "Authorize latency vs live leases", XLabel: "live leases (log)", YLabel: "ms", LogX: true}
	for _, r := range results {
		if r.Skipped != "" {
			continue
		}
		if len(r.Series) > 0 && len(r.Scale) == 0 {
			s := Series{Name: r.Scenario}
			for i, v := range r.Series {
				s.Points = append(s.Points, Point{X: float64(i + 1), Y: v})
			}
			tp.Series = append(tp.Series, s)
		}
		if len(r.Percentiles) > 0 && len(r.Scale) == 0 {
			s := Series{Name: r.Scenario}
			for _, p := range r.Percentiles {
				s.Points = append(s.Points, Point{X: nines(p.X), Y: p.Y})
			}
			lat.Series = append(lat.Series, s)
		}
		if len(r.PropagationCDF) > 0 {
			prop.Series = append(prop.Series, Series{Name: r.Scenario, Points: r.PropagationCDF})
		}
		var target *Chart
		switch r.Scenario {
		case "policy-scale":
			target = &pol
		case "lease-scale":
			target = &lease
		}
		if target != nil && len(r.Scale) > 0 {
			p50, p99 := Series{Name: "p50"}, Series{Name: "p99"}
			for _, s := range r.Scale {
				p50.Points = append(p50.Points, Point{X: float64(s.Size), Y: s.P50Ms})
				p99.Points = append(p99.Points, Point{X: float64(s.Size), Y: s.P99Ms})
			}
			target.Series = append(target.Series, p50, p99)
		}
	}
	return map[string]Chart{PlotThroughput: tp, PlotLatency: lat, PlotPropagation: prop, PlotPolicyScale: pol, PlotLeaseScale: lease}
}

var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"f": func(v float64) string {
		switch {
		case v == 0:
			return "–"
		case math.Abs(v) >= 100:
			return fmt.Sprintf("%.0f", v)
		case math.Abs(v) >= 1:
			return fmt.Sprintf("%.2f", v)
		}
		return fmt.Sprintf("%.3f", v)
	},
	"ratios": func(m map[string]float64) string {
		var parts []string
		for _, k := range sortedKeys(m) {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]))
		}
		return strings.Join(parts, ", ")
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>writ bench report</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}code{background:#f4f4f4;padding:1px 4px}
img{display:block;margin:1em 0;border:1px solid #ddd}
</style></head><body>
<h1>writ bench</h1>
<p><code>{{.Meta.Command}}</code></p>
<p>Machine: {{.Meta.Machine}}. Started {{.Meta.Started}}.{{if .Meta.Conditions}} Conditions: {{.Meta.Conditions}}.{{end}}</p>
{{range .Meta.Notes}}<p>{{.}}</p>{{end}}
<table><tr><th class="l">scenario</th><th>ops/s</th><th class="l">unit</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>errors</th><th class="l">load</th><th class="l">ratios</th><th class="l">notes</th></tr>
{{range .Results}}{{if .Skipped}}<tr><td class="l">{{.Scenario}}</td><td colspan="11" class="l">skipped: {{.Skipped}}</td></tr>
{{else}}<tr><td class="l">{{.Scenario}}</td><td>{{f .OpsPerS}}</td><td class="l">{{.Unit}}</td><td>{{f .P50Ms}}</td><td>{{f .P90Ms}}</td><td>{{f .P99Ms}}</td><td>{{f .P999Ms}}</td><td>{{f .MaxMs}}</td><td>{{.Errors}}</td>
<td class="l">{{.Mode}} {{if eq .Mode "open"}}{{f .Rate}}/s, ≤{{.Concurrency}} in flight{{else}}×{{.Concurrency}}{{end}}{{if .Nodes}}, {{.Nodes}} nodes{{end}}{{if .Protocol}}, {{.Protocol}}{{end}}</td>
<td class="l">{{ratios .Ratios}}</td><td class="l">{{if .Error}}stopped early: {{.Error}}. {{end}}{{.Note}}{{if .Propagation}} Propagation p50 {{f .Propagation.P50Ms}} ms, p99 {{f .Propagation.P99Ms}} ms ({{.Propagation.Count}} revocations).{{end}}{{if gt .DroppedAudit 0}} The nodes dropped {{.DroppedAudit}} audit records: not an audited figure.{{end}}</td></tr>
{{end}}{{end}}</table>
{{range .Results}}{{if .Parts}}<h3>{{.Scenario}}: by operation</h3><table><tr><th class="l">operation</th><th>count</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>
{{range $k, $v := .Parts}}<tr><td class="l">{{$k}}</td><td>{{$v.Count}}</td><td>{{f $v.P50Ms}}</td><td>{{f $v.P99Ms}}</td><td>{{f $v.MaxMs}}</td></tr>{{end}}</table>{{end}}
{{if .Scale}}<h3>{{.Scenario}}</h3><table><tr><th>size</th><th>ops/s</th><th>p50 ms</th><th>p99 ms</th></tr>
{{range .Scale}}<tr><td>{{.Size}}</td><td>{{f .OpsPerS}}</td><td>{{f .P50Ms}}</td><td>{{f .P99Ms}}</td></tr>{{end}}</table>{{end}}{{end}}
{{range .Plots}}<img src="{{.}}" alt="{{.}}">
{{end}}
<p>Raw results: <a href="results.json">results.json</a> (one JSON object per line).</p>
</body></html>
`))

// WriteReport writes dir/index.html, one SVG per plot and results.json.
func WriteReport(dir string, meta Meta, results []*Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	charts := Charts(results)
	plots := []string{PlotThroughput, PlotLatency, PlotPropagation, PlotPolicyScale, PlotLeaseScale}
	for _, name := range plots {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(charts[name].SVG()), 0o644); err != nil {
			return err
		}
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, results); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), js.Bytes(), 0o644); err != nil {
		return err
	}
	m, _ := json.Marshal(meta)
	if err := os.WriteFile(filepath.Join(dir, "meta.json"), append(m, '\n'), 0o644); err != nil {
		return err
	}
	var page bytes.Buffer
	if err := reportPage.Execute(&page, struct {
		Meta    Meta
		Results []*Result
		Plots   []string
	}{meta, results, plots}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "index.html"), page.Bytes(), 0o644)
}
