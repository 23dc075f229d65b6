package bench

import (
	"math"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	cases := []struct {
		name string
		q    float64
		want float64 // ms
	}{
		{"p50", 50, 500}, {"p90", 90, 900}, {"p99", 99, 990}, {"max", 100, 1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.Quantile(tc.q); math.Abs(got-tc.want)/tc.want > 0.002 {
				t.Errorf("q%v = %v ms, want %v ± 0.2%%", tc.q, got, tc.want)
			}
		})
	}
	if h.Count() != 1000 {
		t.Errorf("count %d", h.Count())
	}
}

func TestHistogramClampsAndMerges(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	a.Record(0)              // below the range: counted as 1 µs
	b.Record(10 * time.Hour) // above: clamped to the top
	a.Merge(b)
	if a.Count() != 2 {
		t.Fatalf("count %d, want 2", a.Count())
	}
	if got := a.Quantile(0); got != 0.001 {
		t.Errorf("min %v ms, want 0.001", got)
	}
	if got := a.MaxMs(); got < float64(4*time.Minute/time.Millisecond) {
		t.Errorf("max %v ms, want the 5 minute top of the range", got)
	}
	if got := NewHistogram().Quantile(99); got != 0 {
		t.Errorf("empty histogram p99 %v", got)
	}
}

func TestHistogramCDF(t *testing.T) {
	h := NewHistogram()
	for i := range 5000 {
		h.Record(time.Duration(i%700+1) * 10 * time.Microsecond)
	}
	cdf := h.CDF()
	if len(cdf) == 0 || len(cdf) > 201 {
		t.Fatalf("%d points", len(cdf))
	}
	for i := 1; i < len(cdf); i++ {
		if cdf[i].X < cdf[i-1].X || cdf[i].Y < cdf[i-1].Y {
			t.Fatalf("not monotonic at %d: %v then %v", i, cdf[i-1], cdf[i])
		}
	}
	if last := cdf[len(cdf)-1]; last.Y != 1 {
		t.Errorf("CDF ends at %v, want 1", last.Y)
	}
}
