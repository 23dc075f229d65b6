package bench

import (
	"encoding/json"
	"io"
	"slices"
	"sort"
	"time"
)

// Latency is a latency distribution condensed to a few percentiles (ms).
type Latency struct {
	Count  int64   `json:"count"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// Point is one (x, y) of a plot.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// ScalePoint is one step of a scale scenario (policies or live leases).
type ScalePoint struct {
	Size    int     `json:"size"`
	OpsPerS float64 `json:"ops_per_s"`
	Latency
}

// RunSummary is one of the repeated runs a Result is the median of.
type RunSummary struct {
	OpsPerS float64 `json:"ops_per_s"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	Errors  int64   `json:"errors"`
	// The run's revoke → every node rejects, when it measured that.
	PropagationP50Ms float64 `json:"propagation_p50_ms,omitempty"`
	PropagationP99Ms float64 `json:"propagation_p99_ms,omitempty"`
}

// Result is one scenario's outcome: the `--json` object and what the report
// plots. With several runs, ops_per_s and every latency percentile (the
// headline's, each part's, the propagation's) are medians of the runs' own
// figures, field by field, so p50 ≤ p90 ≤ p99 ≤ p99.9 ≤ max holds as it does
// in each run; the counts of parts and propagation are sums; ops, calls, the
// plotted series, the percentile curve and the propagation CDF come from the
// median run.
type Result struct {
	Scenario string  `json:"scenario"`
	OpsPerS  float64 `json:"ops_per_s"`
	P50Ms    float64 `json:"p50_ms"`
	P90Ms    float64 `json:"p90_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	Errors   int64   `json:"errors"`
	// Ops and Calls are the median run's counts; Unit says what an op is.
	Ops       int64   `json:"ops"`
	Calls     int64   `json:"calls"`
	Unit      string  `json:"unit"`
	DurationS float64 `json:"duration_s"`
	// Load shape: closed (concurrency) or open (rate) loop.
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate,omitempty"`
	Nodes       int     `json:"nodes,omitempty"`
	Protocol    string  `json:"protocol,omitempty"`
	Policies    int     `json:"policies,omitempty"`
	BatchSize   int     `json:"batch_size,omitempty"`
	// Ratios to ceilings and peers measured in the same run, e.g. "ping": 0.82.
	Ratios map[string]float64 `json:"ratios,omitempty"`
	// CPU per operation over the measured period (medians over runs): the
	// load generator's, and the servers' when the bench started them
	// (--local). Zero when not measured.
	ClientCPUUsPerOp float64 `json:"client_cpu_us_per_op,omitempty"`
	ServerCPUUsPerOp float64 `json:"server_cpu_us_per_op,omitempty"`
	// AuditDropped is the audit records the nodes dropped while the
	// scenario ran (warmup included), summed over runs; absent when the
	// nodes' /metrics could not be read. Anything but 0 means the figure is
	// not that of a fully audited cluster.
	AuditDropped *int64       `json:"audit_dropped,omitempty"`
	Runs         []RunSummary `json:"runs,omitempty"`
	// Parts break a mixed load down by operation.
	Parts map[string]Latency `json:"parts,omitempty"`
	// Propagation is revoke → every node rejects, when measured.
	Propagation    *Latency `json:"propagation,omitempty"`
	PropagationCDF []Point  `json:"propagation_cdf,omitempty"`
	// Scale holds the steps of policy-scale and lease-scale.
	Scale        []ScalePoint     `json:"scale,omitempty"`
	Series       []float64        `json:"series_ops_per_s,omitempty"`
	Percentiles  []Point          `json:"percentiles,omitempty"`
	ErrorSamples map[string]int64 `json:"error_samples,omitempty"`
	Skipped      string           `json:"skipped,omitempty"`
	// Error is why a scenario stopped early; what it measured is kept.
	Error string `json:"error,omitempty"`
	Note  string `json:"note,omitempty"`
}

// fromMeasurements builds a Result from repeated runs of one scenario.
func fromMeasurements(name, unit string, l Load, ms []*Measurement) *Result {
	r := &Result{Scenario: name, Unit: unit, Mode: l.Mode(), Concurrency: l.Concurrency, Rate: l.Rate}
	if len(ms) == 0 {
		return r
	}
	for _, m := range ms {
		r.Runs = append(r.Runs, RunSummary{OpsPerS: m.OpsPerSecond(), P50Ms: m.Latency.Quantile(50), P99Ms: m.Latency.Quantile(99), Errors: m.Errors})
		r.Errors += m.Errors
	}
	r.AuditDropped = sumDropped(ms)
	r.ClientCPUUsPerOp = medianCPU(ms, func(m *Measurement) time.Duration { return m.ClientCPU })
	r.ServerCPUUsPerOp = medianCPU(ms, func(m *Measurement) time.Duration { return m.ServerCPU })
	med := medianRun(ms)
	r.OpsPerS = median(mapSlice(r.Runs, func(s RunSummary) float64 { return s.OpsPerS }))
	r.setLatency(medianLatency(mapSlice(ms, func(m *Measurement) Latency { return m.Latency.Summary() })))
	r.Ops, r.Calls, r.DurationS = med.Ops, med.Calls, med.Elapsed.Seconds()
	r.Series, r.Percentiles = med.Series, med.Latency.Percentiles()
	for _, m := range ms {
		for k, v := range m.ErrorSamples {
			if r.ErrorSamples == nil {
				r.ErrorSamples = map[string]int64{}
			}
			r.ErrorSamples[k] += v
		}
	}
	if len(ms) == 1 {
		r.Runs = nil
	}
	return r
}

// DroppedAudit is AuditDropped, or -1 when it was not read.
func (r *Result) DroppedAudit() int64 {
	if r.AuditDropped == nil {
		return -1
	}
	return *r.AuditDropped
}

// sumDropped sums the runs' audit drops; nil unless every run read them.
func sumDropped(ms []*Measurement) *int64 {
	var n int64
	for _, m := range ms {
		if m.AuditDropped < 0 {
			return nil
		}
		n += m.AuditDropped
	}
	return &n
}

// medianCPU is the median over runs of CPU µs per op; 0 unless every run
// was sampled and did work.
func medianCPU(ms []*Measurement, cpu func(*Measurement) time.Duration) float64 {
	var xs []float64
	for _, m := range ms {
		if cpu(m) < 0 || m.Ops == 0 {
			return 0
		}
		xs = append(xs, float64(cpu(m).Microseconds())/float64(m.Ops))
	}
	return median(xs)
}

// medianRun is the run whose throughput is the median (lower middle).
func medianRun(ms []*Measurement) *Measurement {
	s := slices.Clone(ms)
	sort.Slice(s, func(i, j int) bool { return s[i].OpsPerSecond() < s[j].OpsPerSecond() })
	return s[(len(s)-1)/2]
}

// latency is the headline's percentiles as a Latency (Count and MeanMs
// unset); setLatency stores them back.
func (r *Result) latency() Latency {
	return Latency{P50Ms: r.P50Ms, P90Ms: r.P90Ms, P99Ms: r.P99Ms, P999Ms: r.P999Ms, MaxMs: r.MaxMs}
}

func (r *Result) setLatency(l Latency) {
	r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs = l.P50Ms, l.P90Ms, l.P99Ms, l.P999Ms, l.MaxMs
}

// medianLatency condenses runs' summaries of one latency: each percentile,
// the maximum and the mean are the median of the runs' own, Count is the
// total. Field-by-field medians keep the percentiles in order (if every run
// has p90 ≤ p99, the median p90 is at most the median p99); taking one run's
// p90 beside the median p99, as mergeRounds did until 2026-12-07, does not.
func medianLatency(ls []Latency) Latency {
	var out Latency
	for _, l := range ls {
		out.Count += l.Count
	}
	f := func(get func(Latency) float64) float64 { return median(mapSlice(ls, get)) }
	out.P50Ms = f(func(l Latency) float64 { return l.P50Ms })
	out.P90Ms = f(func(l Latency) float64 { return l.P90Ms })
	out.P99Ms = f(func(l Latency) float64 { return l.P99Ms })
	out.P999Ms = f(func(l Latency) float64 { return l.P999Ms })
	out.MaxMs = f(func(l Latency) float64 { return l.MaxMs })
	out.MeanMs = f(func(l Latency) float64 { return l.MeanMs })
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

// WriteJSON writes one JSON object per line per result.
func WriteJSON(w io.Writer, results []*Result) error {
	enc := json.NewEncoder(w)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
