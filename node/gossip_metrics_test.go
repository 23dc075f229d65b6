package node_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
)

// bridgedActivity scrapes a node's /metrics and sums, over every series
// whose name starts with prefix, counter values and summary/histogram
// sample counts: a figure that grows while the library emits.
func bridgedActivity(base, prefix string) (float64, []string, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("scrape: status %d, %v", resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return 0, nil, fmt.Errorf("parse /metrics: %w", err)
	}
	var sum float64
	var names []string
	for name, f := range fams {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		names = append(names, name)
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				sum += m.GetCounter().GetValue()
			case dto.MetricType_SUMMARY:
				sum += float64(m.GetSummary().GetSampleCount())
			case dto.MetricType_HISTOGRAM:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum, names, nil
}

// TestMemberlistMetricsBridged: memberlist's go-metrics (gossip rounds,
// probes, messages) reach the node's /metrics under writ_memberlist_ and
// keep moving while the cluster gossips, as raft's do under writ_raft_.
func TestMemberlistMetricsBridged(t *testing.T) {
	nodes := bootstrapExpectCluster(t, 2, func(i int, c *node.Config) {
		c.BridgeGoMetrics = i == 0
	})
	leaderOf(t, nodes)
	base := "http://" + nodes[0].n.APIAddr()
	for _, prefix := range []string{"writ_memberlist_", "writ_raft_"} {
		var first float64
		var seen []string
		nodetest.Eventually(t, 30*time.Second, prefix+" series on /metrics", func() error {
			v, names, err := bridgedActivity(base, prefix)
			if err != nil {
				return err
			}
			if len(names) == 0 || v == 0 {
				return fmt.Errorf("no %s series with activity yet", prefix)
			}
			first, seen = v, names
			return nil
		})
		nodetest.Eventually(t, 30*time.Second, prefix+" series moving", func() error {
			v, _, err := bridgedActivity(base, prefix)
			if err != nil {
				return err
			}
			if v <= first {
				return fmt.Errorf("activity %v, was %v", v, first)
			}
			return nil
		})
		t.Logf("%s: %d series, e.g. %v", prefix, len(seen), seen[:min(4, len(seen))])
	}
}
