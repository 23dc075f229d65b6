package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram records latencies in microseconds, from 1 µs to 5 minutes, with
// three significant digits (HdrHistogram). It is not safe for concurrent
// use: each worker records into its own and Merge combines them.
type Histogram struct{ h *hdrhistogram.Histogram }

const histMax = int64(5 * time.Minute / time.Microsecond)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{h: hdrhistogram.New(1, histMax, 3)} }

// Record adds one latency; values outside the range are clamped.
func (h *Histogram) Record(d time.Duration) {
	us := max(int64(d/time.Microsecond), 1)
	_ = h.h.RecordValue(min(us, histMax))
}

// Merge adds every value of o.
func (h *Histogram) Merge(o *Histogram) { h.h.Merge(o.h) }

// Count is the number of recorded values.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Quantile returns the latency at q (0..100) in milliseconds.
func (h *Histogram) Quantile(q float64) float64 {
	if h.h.TotalCount() == 0 {
		return 0
	}
	return float64(h.h.ValueAtPercentile(q)) / 1000
}

// MaxMs is the largest recorded latency in milliseconds.
func (h *Histogram) MaxMs() float64 { return float64(h.h.Max()) / 1000 }

// Summary condenses the histogram.
func (h *Histogram) Summary() Latency {
	return Latency{
		Count: h.Count(), P50Ms: h.Quantile(50), P90Ms: h.Quantile(90), P99Ms: h.Quantile(99),
		P999Ms: h.Quantile(99.9), MaxMs: h.MaxMs(), MeanMs: h.h.Mean() / 1000,
	}
}

// plotQuantiles are the percentiles drawn on the latency plot.
var plotQuantiles = []float64{0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100}

// Percentiles returns (percentile, ms) pairs for plotting.
func (h *Histogram) Percentiles() []Point {
	out := make([]Point, 0, len(plotQuantiles))
	for _, q := range plotQuantiles {
		out = append(out, Point{X: q, Y: h.Quantile(q)})
	}
	return out
}

// CDF returns (ms, fraction ≤ ms) pairs, one per distinct recorded bucket,
// thinned to at most 200 points.
func (h *Histogram) CDF() []Point {
	total := h.Count()
	if total == 0 {
		return nil
	}
	var out []Point
	for _, b := range h.h.CumulativeDistribution() {
		out = append(out, Point{X: float64(b.ValueAt) / 1000, Y: float64(b.Count) / float64(total)})
	}
	if len(out) <= 200 {
		return out
	}
	thin := make([]Point, 0, 201)
	step := float64(len(out)) / 200
	for i := 0.0; int(i) < len(out); i += step {
		thin = append(thin, out[int(i)])
	}
	return append(thin, out[len(out)-1])
}
