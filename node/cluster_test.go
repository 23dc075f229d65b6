package node_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/internal/clock"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

const testPolicy = `
@id("deploy-with-ticket")
@reason("prod deploys need a change ticket")
permit (principal, action == Action::"deploy", resource)
when { context has ticket };
`

// setup loads a policy set, an identity, a role and a secret id through
// member 0 and returns the AppRole proof. Each call is retried while the
// member fails closed (Unavailable): on a busy machine an election or a
// lapsed read lease right after start is legitimate and brief.
func setup(t testing.TB, c *nodetest.Cluster) *writv1.AppRoleProof {
	t.Helper()
	ctx := context.Background()
	admin := c.Admin(0)
	must := func(what string, call func() error) {
		t.Helper()
		nodetest.Eventually(t, 30*time.Second, what, func() error {
			err := call()
			if err != nil && connect.CodeOf(err) != connect.CodeUnavailable {
				t.Fatalf("%s: %v", what, err)
			}
			return err
		})
	}
	must("put policy set", func() error {
		_, err := admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{
			PolicySet: &writv1.PolicySet{Name: "prod", Cedar: testPolicy},
		}))
		return err
	})
	must("put identity", func() error {
		_, err := admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: &writv1.Identity{
			Id: "ci/deploy-api", Kind: "ci_job", Owner: "team-platform", Environment: "prod",
		}}))
		return err
	})
	var role *connect.Response[writv1.PutRoleResponse]
	must("put role", func() (err error) {
		role, err = admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: &writv1.Role{
			Name: "deploy-api", Environment: "prod", Identity: "ci/deploy-api", AuthMethods: []string{"approle"},
			DefaultTtlSeconds: 600, MaxTtlSeconds: 3600,
		}}))
		return err
	})
	var sid *connect.Response[writv1.CreateSecretIDResponse]
	must("create secret id", func() (err error) {
		sid, err = admin.CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{Role: "deploy-api"}))
		return err
	})
	return &writv1.AppRoleProof{RoleId: role.Msg.GetRole().GetRoleId(), SecretId: sid.Msg.GetSecretId()}
}

func issueRequest(proof *writv1.AppRoleProof, ticket bool) *connect.Request[writv1.AuthorizeAndIssueRequest] {
	fields := map[string]any{"purpose": "release"}
	if ticket {
		fields["ticket"] = "CHG-1"
	}
	ctxStruct, _ := structpb.NewStruct(fields)
	return connect.NewRequest(&writv1.AuthorizeAndIssueRequest{
		Proof: &writv1.Proof{Method: &writv1.Proof_Approle{Approle: proof}},
		Intent: &writv1.Intent{
			Action:   "deploy",
			Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"},
			Context:  ctxStruct,
		},
	})
}

// TestIssueRevokeAcrossNodes is the foundation's cluster walk: issue through
// node 2, revoke through node 3, and node 1 rejects the credential as soon as
// Revoke returns, with no min_index.
func TestIssueRevokeAcrossNodes(t *testing.T) {
	c := nodetest.New(t, 3, nodetest.Options{})
	proof := setup(t, c)
	ctx := context.Background()

	issued, err := c.Authz(1, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
	if err != nil {
		t.Fatalf("issue through n2: %v", err)
	}
	if !issued.Msg.GetDecision().GetAllowed() || issued.Msg.GetCredential() == "" {
		t.Fatalf("issue not allowed: %v", issued.Msg.GetDecision())
	}
	cred := issued.Msg.GetCredential()

	v, err := c.Authz(0, false).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{
		Credential: cred, Read: &writv1.ReadOptions{MinIndex: issued.Msg.GetIndex()},
	}))
	if err != nil {
		t.Fatalf("verify on n1 before revoke: %v", err)
	}
	if !v.Msg.GetActive() {
		t.Fatalf("verify on n1 before revoke: %v", v.Msg)
	}

	if _, err := c.Authz(2, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
		Target: &writv1.RevokeRequest_LeaseId{LeaseId: issued.Msg.GetLease().GetId()},
	})); err != nil {
		t.Fatalf("revoke through n3: %v", err)
	}
	// No min_index: Revoke returned, so every node in contact must reject.
	for i := range c.Members {
		v, err := c.Authz(i, false).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: cred}))
		if err != nil {
			t.Fatalf("verify on %s: %v", c.Members[i].ID, err)
		}
		if v.Msg.GetActive() || v.Msg.GetReason() != "revoked" {
			t.Fatalf("verify on %s after revoke: active=%v reason=%q", c.Members[i].ID, v.Msg.GetActive(), v.Msg.GetReason())
		}
		_, err = c.Authz(i, false).Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
			Credential: cred, Action: "deploy", Resource: &writv1.Resource{Type: "Deployment", Id: "api-prod"},
		}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("authorize on %s after revoke: want Unauthenticated, got %v", c.Members[i].ID, err)
		}
	}
	c.WaitConverged()
}

// TestDenyNeverWrites: a denied AuthorizeAndIssue answers at once and leaves
// the Raft log untouched.
func TestDenyNeverWrites(t *testing.T) {
	c := nodetest.New(t, 1, nodetest.Options{})
	proof := setup(t, c)
	ctx := context.Background()
	before, err := c.Members[0].Node.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Authz(0, false).AuthorizeAndIssue(ctx, issueRequest(proof, false))
	if err != nil {
		t.Fatalf("issue without ticket: %v", err)
	}
	if resp.Msg.GetDecision().GetAllowed() || resp.Msg.GetCredential() != "" || resp.Msg.GetLease() != nil {
		t.Fatalf("want a deny with no lease, got %v", resp.Msg)
	}
	after, err := c.Members[0].Node.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.GetLastLogIndex() != before.GetLastLogIndex() {
		t.Fatalf("deny wrote to the log: last index %d -> %d", before.GetLastLogIndex(), after.GetLastLogIndex())
	}
}

// TestLeaderKillKeepsAcknowledged: issue and revoke under load through every
// node, kill the leader in the middle of it, and every acknowledged lease and
// revocation survives on the new leader; the killed node restarts from its
// data dir and catches up. A call that failed is not acknowledged: its lease
// may or may not exist, so it is not checked.
func TestLeaderKillKeepsAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster failover test")
	}
	c := nodetest.New(t, 3, nodetest.Options{})
	proof := setup(t, c)
	ctx := context.Background()

	type acked struct {
		leaseID string
		revoked bool // acknowledged revoked
		unsure  bool // a revoke failed: either status is acceptable
	}
	const workers, perWorker = 6, 10
	var mu sync.Mutex
	var leases []acked
	var wg sync.WaitGroup
	killAt := make(chan struct{})
	var killOnce sync.Once
	deadline := time.Now().Add(90 * time.Second)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			at := w % 3
			for done := 0; done < perWorker && time.Now().Before(deadline); {
				resp, err := c.Authz(at, true).AuthorizeAndIssue(ctx, issueRequest(proof, true))
				if err != nil {
					at = (at + 1) % 3 // the member may be dead: try the next one
					continue
				}
				a := acked{leaseID: resp.Msg.GetLease().GetId()}
				if done%3 == 0 {
					if _, err := c.Authz(at, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
						Target: &writv1.RevokeRequest_LeaseId{LeaseId: a.leaseID},
					})); err != nil {
						a.unsure = true
						at = (at + 1) % 3
					} else {
						a.revoked = true
					}
				}
				mu.Lock()
				leases = append(leases, a)
				if len(leases) == workers*perWorker/3 {
					killOnce.Do(func() { close(killAt) })
				}
				mu.Unlock()
				done++
			}
		}(w)
	}
	<-killAt
	old := c.Leader()
	c.Kill(old)
	wg.Wait()
	leader := c.Leader()
	if leader == old {
		t.Fatalf("killed leader %d still leads", old)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := len(leases); got != workers*perWorker {
		t.Fatalf("acknowledged %d leases within the deadline, want %d", got, workers*perWorker)
	}
	check := func(i int) {
		t.Helper()
		admin := c.Admin(i)
		for _, a := range leases {
			resp, err := admin.GetLease(ctx, connect.NewRequest(&writv1.GetLeaseRequest{
				Id: a.leaseID, Read: &writv1.ReadOptions{Consistency: writv1.Consistency_CONSISTENCY_LINEARIZABLE},
			}))
			if err != nil {
				t.Fatalf("%s: acknowledged lease %s lost: %v", c.Members[i].ID, a.leaseID, err)
			}
			got := resp.Msg.GetLease().GetStatus()
			want := "active"
			if a.revoked {
				want = "revoked"
			}
			if got != want && !(a.unsure && got == "revoked") {
				t.Fatalf("%s: lease %s status %q, want %q", c.Members[i].ID, a.leaseID, got, want)
			}
		}
	}
	check(leader)
	// The survivors keep issuing.
	if _, err := c.Authz(leader, false).AuthorizeAndIssue(ctx, issueRequest(proof, true)); err != nil {
		t.Fatalf("issue after failover: %v", err)
	}
	c.Restart(old)
	c.WaitReady(c.Members[old])
	c.WaitConverged()
	check(old)
}

// TestGroupCommit: concurrent issuance is packed into fewer log entries than
// there are leases (the batch, not the request, is the unit of Raft work).
func TestGroupCommit(t *testing.T) {
	c := nodetest.New(t, 1, nodetest.Options{})
	proof := setup(t, c)
	ctx := context.Background()
	before, err := c.Members[0].Node.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const issues = 64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < issues; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := c.Authz(0, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
			if err != nil || !resp.Msg.GetDecision().GetAllowed() {
				t.Errorf("issue: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	after, err := c.Members[0].Node.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	entries := after.GetLastLogIndex() - before.GetLastLogIndex()
	t.Logf("%d leases in %d log entries", issues, entries)
	if entries >= issues {
		t.Fatalf("%d leases took %d log entries: no group commit", issues, entries)
	}
}

// TestReaperRemovesExpired: once leases expire by the (fake) clock, the
// leader removes them in bulk entries and every replica converges on the
// smaller state.
func TestReaperRemovesExpired(t *testing.T) {
	fc := clock.NewFake(time.Now())
	c := nodetest.New(t, 3, nodetest.Options{Clock: fc})
	proof := setup(t, c)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := c.Authz(i%3, false).AuthorizeAndIssue(ctx, issueRequest(proof, true)); err != nil {
			t.Fatal(err)
		}
	}
	fc.Advance(11 * time.Minute) // past the role's 10-minute default TTL
	nodetest.Eventually(t, 20*time.Second, "expired leases reaped", func() error {
		for _, m := range c.Members {
			if n := len(m.Node.FSM().View().Leases("", 0)); n != 0 {
				return fmt.Errorf("%s still holds %d leases", m.ID, n)
			}
		}
		return nil
	})
	c.WaitConverged()
}

func restoreOnce(client writv1connect.ClusterServiceClient, data []byte) (*connect.Response[writv1.SnapshotRestoreResponse], error) {
	up := client.SnapshotRestore(context.Background())
	up.RequestHeader().Set("Authorization", "Bearer "+nodetest.AdminToken)
	for off := 0; off < len(data); off += 4096 {
		if err := up.Send(&writv1.SnapshotRestoreRequest{Chunk: data[off:min(off+4096, len(data))]}); err != nil {
			break // CloseAndReceive reports the server's answer
		}
	}
	return up.CloseAndReceive()
}

// TestSnapshotSaveRestore: a snapshot streamed from a live follower restores
// the whole cluster to that point; a corrupt upload is refused and changes nothing.
func TestSnapshotSaveRestore(t *testing.T) {
	c := nodetest.New(t, 3, nodetest.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	proof := setup(t, c)
	ctx := context.Background()
	a, err := c.Authz(0, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
	if err != nil {
		t.Fatal(err)
	}
	leader := c.Leader()
	follower := (leader + 1) % 3
	cluster := func(i int) writv1connect.ClusterServiceClient {
		return writv1connect.NewClusterServiceClient(http.DefaultClient, "http://"+c.Members[i].APIAddr, connect.WithInterceptors(
			connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
				return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
					req.Header().Set("Authorization", "Bearer "+nodetest.AdminToken)
					return next(ctx, req)
				}
			})))
	}
	// Save from a follower, once it has applied the issuance.
	if _, err := c.Members[follower].Node.WaitApplied(ctx, a.Msg.GetIndex(), false); err != nil {
		t.Fatal(err)
	}
	saveReq := connect.NewRequest(&writv1.SnapshotSaveRequest{})
	saveReq.Header().Set("Authorization", "Bearer "+nodetest.AdminToken)
	stream, err := cluster(follower).SnapshotSave(ctx, saveReq)
	if err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	for stream.Receive() {
		snap.Write(stream.Msg().GetChunk())
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("snapshot save: %v", err)
	}

	// After the backup: revoke a, issue b.
	if _, err := c.Authz(0, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{Target: &writv1.RevokeRequest_LeaseId{LeaseId: a.Msg.GetLease().GetId()}})); err != nil {
		t.Fatal(err)
	}
	b, err := c.Authz(0, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
	if err != nil {
		t.Fatal(err)
	}
	// Restores go to the leader; if leadership moved, ask the new one.
	restore := func(data []byte) (resp *connect.Response[writv1.SnapshotRestoreResponse], err error) {
		for attempt := 0; attempt < 5; attempt++ {
			resp, err = restoreOnce(cluster(c.Leader()), data)
			if connect.CodeOf(err) != connect.CodeUnavailable {
				return resp, err
			}
		}
		return resp, err
	}
	before := c.Members[leader].Node.FSM().StateHash()
	if _, err := restore(snap.Bytes()[:snap.Len()/2]); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("truncated snapshot: want InvalidArgument, got %v", err)
	}
	if c.Members[leader].Node.FSM().StateHash() != before {
		t.Fatal("a refused restore changed the state")
	}
	resp, err := restore(snap.Bytes())
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	c.WaitConverged()
	for i := range c.Members {
		for _, tc := range []struct {
			cred   string
			active bool
		}{{a.Msg.GetCredential(), true}, {b.Msg.GetCredential(), false}} {
			v, err := c.Authz(i, false).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: tc.cred, Read: &writv1.ReadOptions{MinIndex: resp.Msg.GetIndex()}}))
			if err != nil {
				t.Fatal(err)
			}
			if v.Msg.GetActive() != tc.active {
				t.Fatalf("%s after restore: active=%v reason=%q, want active=%v", c.Members[i].ID, v.Msg.GetActive(), v.Msg.GetReason(), tc.active)
			}
		}
	}
}
