package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

func docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// recordingT keeps the first fatal message so that it can be repeated after
// the container logs the cleanup prints: CI shows the end of the output.
type recordingT struct {
	testing.TB
	reason string
}

func (r *recordingT) Fatalf(format string, args ...any) {
	r.TB.Helper()
	if r.reason == "" {
		r.reason = fmt.Sprintf(format, args...)
	}
	r.TB.Fatalf(format, args...)
}

func (r *recordingT) Fatal(args ...any) {
	r.TB.Helper()
	if r.reason == "" {
		r.reason = fmt.Sprint(args...)
	}
	r.TB.Fatal(args...)
}

// hostPort picks a free loopback port below the kernel's ephemeral range.
// A published port from that range can be taken, while its container is
// down, as the source port of one of this process's own connections, and
// `docker start` then fails with "address already in use".
func hostPort(t testing.TB, taken map[int]bool) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 20000 {
				low = v
			}
		}
	}
	for range 200 { // bounded
		p := 20000 + rand.IntN(low-20000)
		if taken[p] {
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(p)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		_ = ln.Close()
		taken[p] = true
		return addr
	}
	t.Fatalf("no free port in [20000, %d) after 200 tries", low)
	return ""
}

// TestDockerCluster: three containers on a private docker network, load from
// this (fourth) process; docker kill the leader, disconnect a follower and
// reconnect it, restart every node in turn. No acknowledged lease or
// revocation may be lost and the replicas must converge.
// Runs with WRIT_DOCKER_TESTS=1 (make test-docker) where a docker engine answers.
func TestDockerCluster(tt *testing.T) {
	t := &recordingT{TB: tt}
	if os.Getenv("WRIT_DOCKER_TESTS") != "1" {
		t.Skip("docker cluster test: set WRIT_DOCKER_TESTS=1 (make test-docker)")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("docker cluster test: no docker engine answers `docker info` on this machine")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	build := exec.Command("make", "image")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	suffix := fmt.Sprintf("%d", rand.IntN(200)+20)
	net := "writ-e2e-" + suffix
	subnet := "172.30." + suffix + ".0/24"
	docker(t, "network", "create", "--subnet", subnet, net)
	names := []string{"writ-e2e-" + suffix + "-n1", "writ-e2e-" + suffix + "-n2", "writ-e2e-" + suffix + "-n3"}
	ips := []string{"172.30." + suffix + ".11", "172.30." + suffix + ".12", "172.30." + suffix + ".13"}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range names {
				out, _ := exec.Command("docker", "logs", "--tail", "80", n).CombinedOutput()
				t.Logf("---- %s ----\n%s", n, out)
			}
			t.Logf("FAILED (repeated after the container logs): %s", t.reason)
		}
		for _, n := range names {
			_ = exec.Command("docker", "rm", "-f", "-v", n).Run()
		}
		_ = exec.Command("docker", "network", "rm", net).Run()
	})
	// Fixed host ports: a restarted container keeps its published address.
	taken := map[int]bool{}
	hostPorts := []string{hostPort(t, taken), hostPort(t, taken), hostPort(t, taken)}
	for i, n := range names {
		args := []string{"run", "-d", "--name", n, "--network", net, "--ip", ips[i], "-p", hostPorts[i] + ":7400",
			"-e", "WRIT_ADMIN_TOKEN=" + adminToken, "-e", "WRIT_GOSSIP_KEY=" + e2eGossipKey, "writ:dev",
			"server", "--node-id", fmt.Sprintf("n%d", i+1), "--data-dir", "/data", "--api-addr", "0.0.0.0:7400", "--raft-addr", "0.0.0.0:7401",
			"--advertise-api", ips[i] + ":7400", "--advertise-raft", ips[i] + ":7401", "--max-staleness", "2s",
			// Every server expects three and joins another's gossip port (7402,
			// the Raft port + 1); restarted containers need no flag change.
			"--bootstrap-expect", "3", "--join", ips[(i+1)%3] + ":7402"}
		docker(t, args...)
	}
	hostAddr := func(i int) string { return hostPorts[i] }
	hc := &http.Client{Timeout: 5 * time.Second}
	ctx := context.Background()
	authz := func(i int) writv1connect.AuthzServiceClient {
		return writv1connect.NewAuthzServiceClient(hc, "http://"+hostAddr(i), bearer(adminToken))
	}
	status := func(i int) (*writv1.StatusResponse, error) {
		resp, err := writv1connect.NewClusterServiceClient(hc, "http://"+hostAddr(i)).Status(ctx, connect.NewRequest(&writv1.StatusRequest{}))
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	}
	leader := func(alive []int) int {
		l := -1
		eventually(t, 60*time.Second, "a leader with 3 voters", func() error {
			for _, i := range alive {
				st, err := status(i)
				if err == nil && st.GetState() == "leader" && len(st.GetMembers()) == 3 {
					l = i
					return nil
				}
			}
			return fmt.Errorf("no leader among %v", alive)
		})
		return l
	}
	leader([]int{0, 1, 2})
	admin := writv1connect.NewAdminServiceClient(hc, "http://"+hostAddr(0), bearer(adminToken))
	eventually(t, 30*time.Second, "policy set stored", func() error {
		_, err := admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{
			Name: "prod", Cedar: `@id("deploy") permit (principal, action == Action::"deploy", resource);`}}))
		return err
	})
	if _, err := admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{Id: "ci/a", Kind: "ci_job", Owner: "t", Environment: "prod"}})); err != nil {
		t.Fatal(err)
	}
	role, err := admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{Name: "a", Environment: "prod", Identity: "ci/a", DefaultTtlSeconds: 3600, MaxTtlSeconds: 3600}}))
	if err != nil {
		t.Fatal(err)
	}
	sid, err := admin.CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{Role: "a"}))
	if err != nil {
		t.Fatal(err)
	}
	emptyCtx, _ := structpb.NewStruct(map[string]any{})
	issueReq := &writv1.AuthorizeAndIssueRequest{
		Proof:  &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: role.Msg.GetRole().GetRoleId(), SecretId: sid.Msg.GetSecretId()}}},
		Intent: &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: emptyCtx},
	}

	// Load from this process: issue through every node, revoke every fifth.
	type acked struct {
		cred, lease string
		index       uint64
		revoked     bool
	}
	var mu sync.Mutex
	var done []acked
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; n < 2000; n++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				c := authz((w + n) % 3)
				resp, err := c.AuthorizeAndIssue(ctx, connect.NewRequest(issueReq))
				if err != nil {
					continue // faults in progress: only acknowledged writes count
				}
				a := acked{cred: resp.Msg.GetCredential(), lease: resp.Msg.GetLease().GetId(), index: resp.Msg.GetIndex()}
				if n%5 == 0 {
					if rv, err := c.Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{Target: &writv1.RevokeRequest_LeaseId{LeaseId: a.lease}})); err == nil {
						a.revoked, a.index = true, rv.Msg.GetIndex()
					} else {
						continue // unknown outcome: leave it out of the checks
					}
				}
				mu.Lock()
				done = append(done, a)
				mu.Unlock()
			}
		}(w)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(done) }
	waitProgress := func(what string) {
		start := count()
		eventually(t, 60*time.Second, what, func() error {
			if count() < start+20 {
				return fmt.Errorf("%d acknowledged since", count()-start)
			}
			return nil
		})
	}
	waitProgress("load running")

	// 1. docker kill the leader, then start it again.
	old := leader([]int{0, 1, 2})
	docker(t, "kill", names[old])
	var alive []int
	for i := range names {
		if i != old {
			alive = append(alive, i)
		}
	}
	eventually(t, 60*time.Second, "new leader after kill", func() error {
		for _, i := range alive {
			if st, err := status(i); err == nil && st.GetState() == "leader" {
				return nil
			}
		}
		return fmt.Errorf("none")
	})
	waitProgress("issuance continues after the kill")
	docker(t, "start", names[old])

	// 2. Disconnect a follower from the network, then reconnect it.
	l := leader([]int{0, 1, 2})
	f := (l + 1) % 3
	docker(t, "network", "disconnect", net, names[f])
	waitProgress("majority keeps issuing with a follower cut off")
	docker(t, "network", "connect", "--ip", ips[f], net, names[f])

	// 3. Rolling restart.
	for i := range names {
		docker(t, "restart", "-t", "5", names[i])
		leader([]int{0, 1, 2})
		waitProgress(fmt.Sprintf("issuance after restarting %s", names[i]))
	}
	close(stop)
	wg.Wait()

	// Every acknowledged lease and revocation is on every node.
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d acknowledged operations", len(done))
	for i := range names {
		c := authz(i)
		for _, a := range done {
			var v *connect.Response[writv1.VerifyResponse]
			eventually(t, 30*time.Second, "verify", func() error {
				var err error
				v, err = c.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: a.cred, Read: &writv1.ReadOptions{MinIndex: a.index}}))
				return err
			})
			if a.revoked == v.Msg.GetActive() {
				t.Fatalf("%s: lease %s active=%v, acknowledged revoked=%v (%s)", names[i], a.lease, v.Msg.GetActive(), a.revoked, v.Msg.GetReason())
			}
		}
	}
	eventually(t, 30*time.Second, "replicas converge", func() error {
		var idx []uint64
		for i := range names {
			st, err := status(i)
			if err != nil {
				return err
			}
			idx = append(idx, st.GetAppliedIndex())
		}
		if idx[0] != idx[1] || idx[1] != idx[2] {
			return fmt.Errorf("applied indexes %v", idx)
		}
		return nil
	})
}
