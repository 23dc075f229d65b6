package telemetry

import (
	"fmt"
	"sync"
	"time"

	gometrics "github.com/armon/go-metrics"
	gmprom "github.com/armon/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

var bridgeMu sync.Mutex

// BridgeGoMetrics makes hashicorp/raft's and memberlist's metrics appear on
// reg, prefixed writ_ (writ_raft_commitTime, writ_raft_apply,
// writ_memberlist_gossip, ...).
//
// Which package they emit to, checked for raft v1.7.3: raft imports
// github.com/hashicorp/go-metrics/compat, which without the hashicorpmetrics
// build tag forwards every call to github.com/armon/go-metrics' global
// sink; memberlist does the same. So the bridge installs an armon
// prometheus sink as that process-wide global. It is the one global Writ
// sets, because those libraries offer no other way in: with several nodes
// in one process (tests), the node that bridged last receives every node's
// raft metrics. Writ's own metrics (NewMetrics) are per registry.
func BridgeGoMetrics(reg prometheus.Registerer) error {
	bridgeMu.Lock()
	defer bridgeMu.Unlock()
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Expiration: 10 * time.Minute})
	if err != nil {
		return fmt.Errorf("go-metrics prometheus sink: %w", err)
	}
	cfg := gometrics.DefaultConfig("writ")
	cfg.EnableHostname = false
	cfg.EnableHostnameLabel = false
	cfg.EnableRuntimeMetrics = false // client_golang's Go collector covers these
	cfg.EnableServiceLabel = false
	if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
		return fmt.Errorf("go-metrics global: %w", err)
	}
	return nil
}
