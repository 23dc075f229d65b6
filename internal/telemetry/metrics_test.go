package telemetry

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestDecisionObserver checks that Decision observes into DecisionSeconds
// under its labels and hands out the same observer for the same labels.
func TestDecisionObserver(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	m.Decision("Authorize", "allow").Observe(0.001)
	m.Decision("Authorize", "allow").Observe(0.002)
	m.Decision("Authorize", "deny").Observe(0.003)
	if m.Decision("Authorize", "allow") != m.Decision("Authorize", "allow") {
		t.Error("two observers for the same labels")
	}
	for _, tc := range []struct {
		result string
		count  uint64
	}{{"allow", 2}, {"deny", 1}, {"error", 0}} {
		var out dto.Metric
		if err := m.DecisionSeconds.WithLabelValues("Authorize", tc.result).(prometheus.Histogram).Write(&out); err != nil {
			t.Fatal(err)
		}
		if got := out.GetHistogram().GetSampleCount(); got != tc.count {
			t.Errorf("result %s: %d observations, want %d", tc.result, got, tc.count)
		}
	}
}
