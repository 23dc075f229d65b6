package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func measurement(opsPerS float64, lat ...time.Duration) *Measurement {
	h := NewHistogram()
	for _, d := range lat {
		h.Record(d)
	}
	return &Measurement{Ops: int64(opsPerS * 10), Calls: int64(opsPerS * 10), Elapsed: 10 * time.Second, Latency: h, Series: []float64{opsPerS, opsPerS}}
}

func TestFromMeasurementsMedians(t *testing.T) {
	ms := []*Measurement{
		measurement(100, time.Millisecond, 9*time.Millisecond),
		measurement(300, 3*time.Millisecond, 30*time.Millisecond),
		measurement(200, 2*time.Millisecond, 20*time.Millisecond),
	}
	r := fromMeasurements("authorize", "decisions", Load{Concurrency: 8, Duration: time.Second}, ms)
	got := struct {
		Ops, P50, P99 float64
		Calls         int64
		Runs          int
	}{r.OpsPerS, r.P50Ms, r.P99Ms, r.Calls, len(r.Runs)}
	want := got
	want.Ops, want.P50, want.P99, want.Calls, want.Runs = 200, 2, 20, 2000, 3
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b float64) bool { return a == b || (b != 0 && (a/b > 0.998 && a/b < 1.002)) })); diff != "" {
		t.Errorf("medians (-want +got):\n%s", diff)
	}
	if r.Mode != "closed" || r.Concurrency != 8 {
		t.Errorf("load %s ×%d", r.Mode, r.Concurrency)
	}
}

// TestWriteJSON: one object per line with the fields the issue names.
func TestWriteJSON(t *testing.T) {
	results := []*Result{
		fromMeasurements("authorize", "decisions", Load{Concurrency: 1, Duration: time.Second}, []*Measurement{measurement(10, time.Millisecond)}),
		skipped(PeerEtcdGrant, "etcd not found"),
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, results); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		for _, k := range []string{"scenario", "ops_per_s", "p50_ms", "p99_ms", "errors"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s lacks %q", l, k)
			}
		}
	}
}

func TestAddRatios(t *testing.T) {
	results := []*Result{
		{Scenario: PeerPing, OpsPerS: 1000, ServerCPUUsPerOp: 50},
		{Scenario: PeerEtcdGrant, OpsPerS: 400},
		{Scenario: PeerRaft, Skipped: "no"},
		{Scenario: PeerEtcdPropagation, P99Ms: 4, Propagation: &Latency{P99Ms: 4}},
		{Scenario: "authorize", OpsPerS: 800, ServerCPUUsPerOp: 75},
		{Scenario: "verify", OpsPerS: 500}, // no CPU sampled: no CPU ratio
		{Scenario: "issue", OpsPerS: 600},
		{Scenario: "mixed", Propagation: &Latency{P99Ms: 6}},
	}
	addRatios(results)
	got := map[string]map[string]float64{}
	for _, r := range results {
		if r.Ratios != nil {
			got[r.Scenario] = r.Ratios
		}
	}
	want := map[string]map[string]float64{
		"authorize": {"ping": 0.8, "server_cpu_vs_ping": 1.5},
		"verify":    {"ping": 0.5},
		"issue":     {"etcd_lease_grant": 1.5},
		"mixed":     {"propagation_p99_vs_etcd": 1.5},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ratios (-want +got):\n%s", diff)
	}
}

// wellFormed parses s as XML.
func wellFormed(t *testing.T, name, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", name, err)
		}
	}
}

func TestChartSVG(t *testing.T) {
	cases := []struct {
		name  string
		chart Chart
		want  []string
	}{
		{"empty", Chart{Title: "t"}, []string{"no data"}},
		{"linear", Chart{Title: "a < b", Series: []Series{{Name: "s&1", Points: []Point{{1, 10}, {2, 20}, {3, 15}}}}}, []string{"<polyline", "a &lt; b", "s&amp;1", "<circle"}},
		{"log both, bad points dropped", Chart{LogX: true, LogY: true, Series: []Series{{Name: "s", Points: []Point{{0, 1}, {10, 0}, {100, 5}, {1000, 50}}}}}, []string{"<polyline", ">1000<", `points="70.0,251.4 730.0,88.9"`}},
		{"tick labels", Chart{XTickLabels: map[float64]string{0: "p0", 2: "p99"}, Series: []Series{{Name: "s", Points: []Point{{0, 1}, {2, 3}}}}}, []string{">p0<", ">p99<"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.chart.SVG()
			wellFormed(t, tc.name, s)
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Errorf("svg lacks %q:\n%s", w, s)
				}
			}
			if s != tc.chart.SVG() {
				t.Errorf("output is not deterministic")
			}
		})
	}
}

// TestWriteReport: the page, every plot (well-formed, with the data drawn)
// and the raw results land in the directory.
func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	auth := fromMeasurements("authorize", "decisions", Load{Concurrency: 4, Duration: time.Second}, []*Measurement{measurement(500, time.Millisecond, 3*time.Millisecond)})
	dropped := int64(42)
	prop := &Result{Scenario: "revoke-propagation", OpsPerS: 10, Propagation: &Latency{P99Ms: 3}, PropagationCDF: []Point{{1, 0.5}, {3, 1}}, AuditDropped: &dropped}
	pol := &Result{Scenario: "policy-scale", Scale: []ScalePoint{{Size: 10, Latency: Latency{P50Ms: 1, P99Ms: 2}}, {Size: 10000, Latency: Latency{P50Ms: 1.2, P99Ms: 2.5}}}}
	results := []*Result{auth, prop, pol, skipped(PeerEtcdGrant, "etcd not found")}
	if err := WriteReport(dir, Meta{Command: "writ bench --local 3", Machine: "test"}, results); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"writ bench --local 3", "skipped: etcd not found", "authorize", "results.json", "The nodes dropped 42 audit records"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	if n := bytes.Count(page, []byte("audit records")); n != 1 {
		t.Errorf("index.html mentions dropped audit records %d times, want once (only the result that dropped some)", n)
	}
	drawn := map[string]bool{PlotThroughput: true, PlotLatency: true, PlotPropagation: true, PlotPolicyScale: true, PlotLeaseScale: false}
	for name, hasData := range drawn {
		if !bytes.Contains(page, []byte(`src="`+name+`"`)) {
			t.Errorf("index.html does not show %s", name)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		wellFormed(t, name, string(b))
		if got := bytes.Contains(b, []byte("<polyline")); got != hasData {
			t.Errorf("%s: drawn %v, want %v", name, got, hasData)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(raw, []byte("\n")); n != len(results) {
		t.Errorf("results.json has %d lines, want %d", n, len(results))
	}
}

func TestProgressLine(t *testing.T) {
	cases := []struct {
		name             string
		elapsed, total   time.Duration
		ops              int64
		wantBar, wantEnd string
	}{
		{"start", 0, 10 * time.Second, 0, "[>" + strings.Repeat(" ", 9) + "]", "0 ops  0/s"},
		{"half", 5 * time.Second, 10 * time.Second, 500, "[=====>    ]", "500 ops  100/s"},
		{"past the end", 12 * time.Second, 10 * time.Second, 1200, "[==========]", "1200 ops  100/s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := progressLine("authorize", tc.elapsed, tc.total, tc.ops, 10)
			if !strings.Contains(l, tc.wantBar) || !strings.HasSuffix(l, tc.wantEnd) {
				t.Errorf("%q: want bar %q and end %q", l, tc.wantBar, tc.wantEnd)
			}
		})
	}
}

func TestNines(t *testing.T) {
	for q, want := range map[float64]float64{0: 0, 90: 1, 99: 2, 99.9: 3, 100: 5} {
		if got := nines(q); got < want-1e-9 || got > want+1e-9 {
			t.Errorf("nines(%v) = %v, want %v", q, got, want)
		}
	}
}

// TestMergeRounds: interleaved rounds become one result per name with
// medians of throughput, latency and each round's own ratio.
func TestMergeRounds(t *testing.T) {
	round := func(ping, auth, p99 float64) []*Result {
		rs := []*Result{{Scenario: PeerPing, OpsPerS: ping}, {Scenario: "authorize", OpsPerS: auth, P99Ms: p99, Errors: 1,
			Scale: []ScalePoint{{Size: 10, OpsPerS: auth}}}}
		addRatios(rs)
		return rs
	}
	merged := mergeRounds([][]*Result{round(1000, 900, 5), round(500, 400, 9), round(800, 600, 7)})
	if len(merged) != 2 {
		t.Fatalf("%d results", len(merged))
	}
	a := merged[1]
	got := []float64{a.OpsPerS, a.P99Ms, float64(a.Errors), float64(len(a.Runs)), a.Scale[0].OpsPerS, a.Ratios["ping"]}
	want := []float64{600, 7, 3, 3, 600, 0.8} // per-round ratios 0.9, 0.8, 0.75
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y float64) bool { return x-y < 1e-9 && y-x < 1e-9 })); diff != "" {
		t.Errorf("merged (-want +got):\n%s", diff)
	}
}
