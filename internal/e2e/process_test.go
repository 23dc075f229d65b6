// Package e2e runs Writ as real processes (and, in docker_test.go, as
// containers) and drives them over real sockets.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/internal/proccluster"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

const adminToken = "writ_admin_e2e-token"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// writBinary builds cmd/writ once per test binary.
func writBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "writ-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "writ")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/writ")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		case <-tick.C:
		}
	}
}

func bearer(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}))
}

// TestThreeProcessCluster: three `writ server` processes on 127.0.0.1. Issue
// through node 2, revoke through node 3, node 1 rejects; SIGKILL the leader,
// the other two elect a leader and every acknowledged lease and revocation is
// still there; the killed node restarts from its data dir and catches up.
func TestThreeProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	bin := writBinary(t)
	pc, err := proccluster.Start(proccluster.Config{
		Binary: bin, Nodes: 3, Dir: t.TempDir(), AdminToken: adminToken, ExtraArgs: []string{"--max-staleness", "2s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	procs := pc.Nodes
	t.Cleanup(func() {
		pc.Stop()
		if t.Failed() {
			for i, p := range procs {
				t.Logf("---- %s output ----\n%s", p.ID, pc.Output(i))
			}
		}
	})
	hc := &http.Client{Timeout: 10 * time.Second}
	cluster := func(i int) writv1connect.ClusterServiceClient {
		return writv1connect.NewClusterServiceClient(hc, "http://"+procs[i].API)
	}
	admin := func(i int) writv1connect.AdminServiceClient {
		return writv1connect.NewAdminServiceClient(hc, "http://"+procs[i].API, bearer(adminToken))
	}
	authz := func(i int) writv1connect.AuthzServiceClient {
		return writv1connect.NewAuthzServiceClient(hc, "http://"+procs[i].API, bearer(adminToken))
	}
	ctx := context.Background()
	leaderOf := func(alive ...int) int {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		leader, err := pc.Leader(wctx, 3, alive...)
		if err != nil {
			t.Fatalf("a leader with 3 voters: %v", err)
		}
		return leader
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pc.WaitReady(rctx); err != nil {
		t.Fatalf("cluster ready: %v", err)
	}

	// Configure through node 1.
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(admin(0).PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: &writv1.PolicySet{
		Name: "prod", Cedar: `@id("deploy") permit (principal, action == Action::"deploy", resource) when { context has ticket };`,
	}})))
	must(admin(0).PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
		Id: "ci/deploy-api", Kind: "ci_job", Owner: "team-platform", Environment: "prod",
	}})))
	role, err := admin(0).PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
		Name: "deploy-api", Environment: "prod", Identity: "ci/deploy-api", AuthMethods: []string{"approle"},
	}}))
	must(role, err)
	sid, err := admin(0).CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{Role: "deploy-api"}))
	must(sid, err)
	ticket, _ := structpb.NewStruct(map[string]any{"ticket": "CHG-7"})
	issue := func(i int) *writv1.AuthorizeAndIssueResponse {
		t.Helper()
		resp, err := authz(i).AuthorizeAndIssue(ctx, connect.NewRequest(&writv1.AuthorizeAndIssueRequest{
			Proof: &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{
				RoleId: role.Msg.GetRole().GetRoleId(), SecretId: sid.Msg.GetSecretId(),
			}}},
			Intent: &writv1.Intent{Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api"}, Context: ticket},
		}))
		if err != nil {
			t.Fatalf("issue through %s: %v", procs[i].ID, err)
		}
		if !resp.Msg.GetDecision().GetAllowed() {
			t.Fatalf("issue denied: %v", resp.Msg.GetDecision())
		}
		return resp.Msg
	}
	verify := func(i int, cred string, minIndex uint64) *writv1.VerifyResponse {
		t.Helper()
		resp, err := authz(i).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: cred, Read: &writv1.ReadOptions{MinIndex: minIndex}}))
		if err != nil {
			t.Fatalf("verify through %s: %v", procs[i].ID, err)
		}
		return resp.Msg
	}

	revoked := issue(1) // through node 2
	kept := issue(1)
	rv, err := authz(2).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{ // through node 3
		Target: &writv1.RevokeRequest_LeaseId{LeaseId: revoked.GetLease().GetId()},
	}))
	must(rv, err)
	if v := verify(0, revoked.GetCredential(), 0); v.GetActive() || v.GetReason() != "revoked" {
		t.Fatalf("node 1 accepts a revoked credential: %v", v)
	}
	if v := verify(0, kept.GetCredential(), kept.GetIndex()); !v.GetActive() {
		t.Fatalf("node 1 rejects a live credential: %v", v)
	}

	// SIGKILL the leader.
	old := leaderOf(0, 1, 2)
	pc.Kill(old)
	var alive []int
	for i := range procs {
		if i != old {
			alive = append(alive, i)
		}
	}
	eventually(t, 30*time.Second, "a new leader", func() error {
		for _, i := range alive {
			st, err := cluster(i).Status(ctx, connect.NewRequest(&writv1.StatusRequest{}))
			if err == nil && st.Msg.GetState() == "leader" {
				return nil
			}
		}
		return fmt.Errorf("no leader among %v", alive)
	})
	for _, i := range alive {
		eventually(t, 10*time.Second, "survivor answers", func() error {
			_, err := authz(i).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: kept.GetCredential()}))
			return err
		})
		if v := verify(i, revoked.GetCredential(), rv.Msg.GetIndex()); v.GetActive() {
			t.Fatalf("%s lost a revocation", procs[i].ID)
		}
		if v := verify(i, kept.GetCredential(), kept.GetIndex()); !v.GetActive() {
			t.Fatalf("%s lost an acknowledged lease: %v", procs[i].ID, v)
		}
	}
	after := issue(alive[0])

	// Restart the killed node from its data dir; it catches up.
	if err := pc.Restart(old); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "restarted node catches up", func() error {
		resp, err := authz(old).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{
			Credential: after.GetCredential(), Read: &writv1.ReadOptions{MinIndex: after.GetIndex()},
		}))
		if err != nil {
			return err
		}
		if !resp.Msg.GetActive() {
			return fmt.Errorf("lease issued while down is not active: %v", resp.Msg)
		}
		return nil
	})
	if v := verify(old, revoked.GetCredential(), 0); v.GetActive() {
		t.Fatalf("restarted node accepts a revoked credential")
	}
}
