package bench_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/bench"
	"github.com/writ-dev/writ/node/nodetest"
)

// TestScenariosAgainstANode runs every scenario briefly against an
// in-process node, with the ping and raw raft ceilings and a missing etcd:
// every scenario must produce operations without errors (one second each:
// a shorter window can hold no completed issue on a loaded machine), and the ratios to
// the ceilings must be filled in.
func TestScenariosAgainstANode(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a node")
	}
	c := nodetest.New(t, 1, nodetest.Options{Environments: strings.Split(bench.Environments, ",")})
	target, err := bench.NewTarget([]string{"http://" + c.Members[0].APIAddr}, nodetest.AdminToken, bench.ProtoConnect, 4)
	if err != nil {
		t.Fatal(err)
	}
	ping := httptest.NewServer(bench.PingHandler())
	t.Cleanup(ping.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	results, err := bench.RunScenarios(ctx, bench.Config{
		Target: target, Scenarios: bench.Scenarios, Policies: 20, BatchSize: 10,
		PolicyLevels: []int{2, 20}, LeaseLevels: []int{5, 10}, ScaleDuration: 300 * time.Millisecond,
		Load:  bench.Load{Duration: time.Second, Concurrency: 4},
		Peers: &bench.Peers{PingURL: ping.URL, Raft: true, EtcdBinary: "writ-test-no-such-etcd", Dir: t.TempDir()},
	})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*bench.Result{}
	for _, r := range results {
		byName[r.Scenario] = r
	}
	for _, name := range append([]string{bench.PeerPing, bench.PeerRaft}, bench.Scenarios...) {
		r := byName[name]
		switch {
		case r == nil:
			t.Errorf("%s: no result", name)
		case r.Skipped != "":
			t.Errorf("%s: skipped: %s", name, r.Skipped)
		case r.OpsPerS <= 0 || r.Errors != 0:
			t.Errorf("%s: %.1f ops/s, %d errors %v", name, r.OpsPerS, r.Errors, r.ErrorSamples)
		}
	}
	if r := byName[bench.PeerEtcdGrant]; r == nil || !strings.Contains(r.Skipped, "not found") {
		t.Errorf("a missing etcd must be skipped with a message, got %+v", r)
	}
	if r := byName["authorize"]; r != nil && r.Ratios["ping"] <= 0 {
		t.Errorf("authorize has no ratio to the ping: %v", r.Ratios)
	}
	if r := byName["issue"]; r != nil && r.Ratios["raft"] <= 0 {
		t.Errorf("issue has no ratio to raw raft: %v", r.Ratios)
	}
	if r := byName["batch-authorize"]; r != nil && r.Ops != 10*r.Calls {
		t.Errorf("batch-authorize counted %d decisions in %d calls of 10", r.Ops, r.Calls)
	}
	for _, name := range []string{"policy-scale", "lease-scale"} {
		if r := byName[name]; r != nil && len(r.Scale) != 2 {
			t.Errorf("%s: %d scale points, want 2", name, len(r.Scale))
		}
	}
	if r := byName["revoke-propagation"]; r != nil && (r.Propagation == nil || r.Propagation.Count == 0) {
		t.Errorf("revoke-propagation measured no propagation: %+v", r.Propagation)
	}
}

func TestConfigErrors(t *testing.T) {
	target, err := bench.NewTarget([]string{"http://127.0.0.1:1"}, "t", bench.ProtoConnect, 1)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  bench.Config
		want error
	}{
		{"no target", bench.Config{Load: bench.Load{Duration: time.Second, Concurrency: 1}}, bench.ErrConfig},
		{"unknown scenario", bench.Config{Target: target, Scenarios: []string{"nope"}, Load: bench.Load{Duration: time.Second, Concurrency: 1}}, bench.ErrUnknownScenario},
		{"bad load", bench.Config{Target: target, Load: bench.Load{}}, bench.ErrConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := bench.RunScenarios(context.Background(), tc.cfg); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := bench.ParseProtocol("http3"); !errors.Is(err, bench.ErrConfig) {
		t.Errorf("ParseProtocol(http3): %v", err)
	}
}
