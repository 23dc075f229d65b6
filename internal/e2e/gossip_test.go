package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

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
	procs := make([]*proc, 3)
	gossip := make([]string, 3)
	for i := range procs {
		gossip[i] = freePort(t)
	}
	for i := range procs {
		p := &proc{id: fmt.Sprintf("n%d", i+1), dataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)), api: freePort(t), raft: freePort(t)}
		p.args = []string{"server", "--node-id", p.id, "--data-dir", p.dataDir, "--api-addr", p.api, "--raft-addr", p.raft,
			"--gossip-addr", gossip[i], "--gossip-key", e2eGossipKey, "--bootstrap-expect", "3",
			"--join", gossip[(i+1)%3], "--max-staleness", "2s", "--log-level", "debug"}
		procs[i] = p
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
		if t.Failed() {
			for _, p := range procs {
				t.Logf("---- %s output ----\n%s", p.id, p.out.String())
			}
		}
	})
	for _, p := range procs {
		p.start(t, bin)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	cluster := func(i int) writv1connect.ClusterServiceClient {
		return writv1connect.NewClusterServiceClient(hc, "http://"+procs[i].api)
	}
	admin := func(i int) writv1connect.AdminServiceClient {
		return writv1connect.NewAdminServiceClient(hc, "http://"+procs[i].api, bearer(adminToken))
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
					return fmt.Errorf("%s sees %d alive voters", procs[i].id, voters)
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
	out := runWrit(t, bin, "status", "--addr", procs[follower].api)
	for _, want := range []string{"gossip key      yes", "MEMBER  GOSSIP", "alive", "leader"} {
		if !strings.Contains(out, want) {
			t.Fatalf("writ status lacks %q:\n%s", want, out)
		}
	}

	// The leader leaves.
	out = runWrit(t, bin, "leave", "--addr", procs[leader].api, "--token", adminToken)
	if !strings.Contains(out, "left the cluster") {
		t.Fatalf("writ leave printed:\n%s", out)
	}
	select {
	case <-procs[leader].done:
		if code := procs[leader].cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("%s exited %d after leaving", procs[leader].id, code)
		}
		procs[leader].cmd = nil
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit after leaving", procs[leader].id)
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
	if slices.Contains(voters, procs[leader].id) || len(voters) != 2 {
		t.Fatalf("voters after %s left: %v", procs[leader].id, voters)
	}
	for _, i := range rest {
		if _, err := admin(i).PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
			Id: "ci/after-leave-" + procs[i].id, Kind: "ci_job", Owner: "team-platform", Environment: "prod",
		}})); err != nil {
			t.Fatalf("write through %s after the leave: %v", procs[i].id, err)
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
