package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/internal/proccluster"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

const e2eGossipKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes, base64

// TestBootstrapExpectAndLeave: three `writ server --bootstrap-expect 3`
// processes, each joining another through its gossip address, form one
// cluster with encrypted gossip; `writ status` lists the three alive
// voters; `writ leave` makes the leader hand over leadership, get removed
// and exit 0, and the other two keep serving writes.
func TestBootstrapExpectAndLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	bin := writBinary(t)
	dir := t.TempDir()
	pc, err := proccluster.Start(proccluster.Config{
		Binary: bin, Nodes: 3, Dir: dir, AdminToken: adminToken,
		ExtraArgs: []string{"--gossip-key", e2eGossipKey, "--bootstrap-expect", "3", "--max-staleness", "2s", "--log-level", "debug"},
		Formation: func(i int, nodes []*proccluster.Node) []string {
			return []string{"--join", nodes[(i+1)%3].Gossip}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pc.Stop()
		if t.Failed() {
			for i, n := range pc.Nodes {
				t.Logf("---- %s output ----\n%s", n.ID, pc.Output(i))
			}
		}
	})
	procs := pc.Nodes
	hc := &http.Client{Timeout: 10 * time.Second}
	cluster := func(i int) writv1connect.ClusterServiceClient {
		return writv1connect.NewClusterServiceClient(hc, "http://"+procs[i].API)
	}
	admin := func(i int) writv1connect.AdminServiceClient {
		return writv1connect.NewAdminServiceClient(hc, "http://"+procs[i].API, bearer(adminToken))
	}
	ctx := context.Background()
	// findLeader waits until one of alive leads with want alive voters that
	// every alive node agrees on, and returns it.
	findLeader := func(want int, alive ...int) int {
		t.Helper()
		leader := -1
		eventually(t, 60*time.Second, fmt.Sprintf("a leader with %d alive voters", want), func() error {
			clusterIDs := map[string]bool{}
			leader = -1
			for _, i := range alive {
				st, err := cluster(i).Status(ctx, connect.NewRequest(&writv1.StatusRequest{}))
				if err != nil {
					return err
				}
				clusterIDs[st.Msg.GetClusterId()] = true
				voters := 0
				for _, m := range st.Msg.GetMembers() {
					if m.GetSuffrage() == "voter" && m.GetGossipState() == "alive" {
						voters++
					}
				}
				if voters != want {
					return fmt.Errorf("%s sees %d alive voters", procs[i].ID, voters)
				}
				if st.Msg.GetState() == "leader" {
					leader = i
				}
			}
			if len(clusterIDs) != 1 || clusterIDs[""] {
				return fmt.Errorf("cluster ids %v", clusterIDs)
			}
			if leader < 0 {
				return fmt.Errorf("no leader among %v", alive)
			}
			return nil
		})
		return leader
	}
	leader := findLeader(3, 0, 1, 2)

	// writ status through a follower shows gossip state and per-member stats.
	follower := (leader + 1) % 3
	out := runWrit(t, bin, "status", "--addr", procs[follower].API)
	for _, want := range []string{"gossip key      yes", "MEMBER  GOSSIP", "alive", "leader"} {
		if !strings.Contains(out, want) {
			t.Fatalf("writ status lacks %q:\n%s", want, out)
		}
	}

	// The leader leaves.
	out = runWrit(t, bin, "leave", "--addr", procs[leader].API, "--token", adminToken)
	if !strings.Contains(out, "left the cluster") {
		t.Fatalf("writ leave printed:\n%s", out)
	}
	select {
	case <-pc.Exited(leader):
		if code := pc.ExitCode(leader); code != 0 {
			t.Fatalf("%s exited %d after leaving", procs[leader].ID, code)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit after leaving", procs[leader].ID)
	}
	var rest []int
	for i := range procs {
		if i != leader {
			rest = append(rest, i)
		}
	}
	newLeader := findLeader(2, rest...)
	st, err := cluster(newLeader).Status(ctx, connect.NewRequest(&writv1.StatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var voters []string
	for _, m := range st.Msg.GetMembers() {
		if m.GetSuffrage() == "voter" {
			voters = append(voters, m.GetId())
		}
	}
	if slices.Contains(voters, procs[leader].ID) || len(voters) != 2 {
		t.Fatalf("voters after %s left: %v", procs[leader].ID, voters)
	}
	for _, i := range rest {
		if _, err := admin(i).PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
			Id: "ci/after-leave-" + procs[i].ID, Kind: "ci_job", Owner: "team-platform", Environment: "prod",
		}})); err != nil {
			t.Fatalf("write through %s after the leave: %v", procs[i].ID, err)
		}
	}
}

// runWrit runs the CLI and returns its stdout; a non-zero exit fails the test.
func runWrit(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "WRIT_ADMIN_TOKEN="+adminToken)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("writ %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
