package bench_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/bench"
	"github.com/writ-dev/writ/node"
	"github.com/writ-dev/writ/node/nodetest"
)

// TestProfileScenario is how the hot paths were profiled: the nodes and the
// load generator in one process, so one CPU profile shows both. It runs only
// when asked:
//
//	WRIT_PROFILE_SCENARIO=issue WRIT_PROFILE_NODES=3 WRIT_PROFILE_CONCURRENCY=32 \
//	  go test -run TestProfileScenario -v -cpuprofile /tmp/issue.prof ./bench/
//	go tool pprof -top -cum bench.test /tmp/issue.prof
func TestProfileScenario(t *testing.T) {
	scenarios := os.Getenv("WRIT_PROFILE_SCENARIO")
	if scenarios == "" {
		t.Skip("set WRIT_PROFILE_SCENARIO to profile a scenario")
	}
	nodes, conc := envInt(t, "WRIT_PROFILE_NODES", 3), envInt(t, "WRIT_PROFILE_CONCURRENCY", 32)
	// The nodes audit and bridge go-metrics as 'writ server' does by
	// default, so the profile shows the per-decision audit record too.
	c := nodetest.New(t, nodes, nodetest.Options{Environments: strings.Split(bench.Environments, ","),
		Configure: func(m *nodetest.Member, cfg *node.Config) {
			cfg.Audit = &audit.Config{Dir: filepath.Join(m.DataDir, "audit")}
			cfg.BridgeGoMetrics = true
		}})
	var urls []string
	for _, m := range c.Members {
		urls = append(urls, "http://"+m.APIAddr)
	}
	target, err := bench.NewTarget(urls, nodetest.AdminToken, bench.ProtoConnect, conc)
	if err != nil {
		t.Fatal(err)
	}
	results, err := bench.RunScenarios(context.Background(), bench.Config{
		Target: target, Scenarios: strings.Split(scenarios, ","),
		Load: bench.Load{Duration: 8 * time.Second, Warmup: time.Second, Concurrency: conc},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		t.Log(r.String())
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}
