package node_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// TestOneUseSecretIDRacedFromThreeNodes: a secret id with one use, presented
// concurrently through every node of a 3-node cluster (three logins per
// node, all released at once), issues exactly one lease cluster-wide. Every
// other login fails Unauthenticated with reason secret_id_used_up, whether
// the receiving node already saw the use consumed or Apply, which consumes
// the use atomically with the issuance, refused it.
func TestOneUseSecretIDRacedFromThreeNodes(t *testing.T) {
	c := nodetest.New(t, 3, nodetest.Options{})
	setup(t, c)
	ctx := context.Background()
	admin := c.Admin(0)
	role, err := admin.GetRole(ctx, connect.NewRequest(&writv1.GetRoleRequest{Name: "deploy-api"}))
	if err != nil {
		t.Fatal(err)
	}
	sid, err := admin.CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{Role: "deploy-api", NumUses: 1}))
	if err != nil {
		t.Fatal(err)
	}
	// Every node knows the secret id before the race starts, so each login
	// gets as far as the use count.
	c.WaitConverged()
	proof := &writv1.AppRoleProof{RoleId: role.Msg.GetRole().GetRoleId(), SecretId: sid.Msg.GetSecretId()}

	const perNode = 3
	type outcome struct {
		node   int
		lease  string
		code   connect.Code
		reason string
		err    error
	}
	results := make(chan outcome, perNode*len(c.Members))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range c.Members {
		client := c.Authz(i, false)
		for range perNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resp, err := client.AuthorizeAndIssue(ctx, issueRequest(proof, true))
				o := outcome{node: i, err: err, code: connect.CodeOf(err), reason: reasonOf(err)}
				if err == nil {
					o.lease = resp.Msg.GetLease().GetId()
				}
				results <- o
			}()
		}
	}
	close(start)
	wg.Wait()
	close(results)

	var won []outcome
	for o := range results {
		switch {
		case o.err == nil && o.lease != "":
			won = append(won, o)
		case o.code == connect.CodeUnauthenticated && o.reason == "secret_id_used_up":
		default:
			t.Errorf("login through n%d: %v (code %v, reason %q)", o.node+1, o.err, o.code, o.reason)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d logins succeeded with a one-use secret id, want exactly 1: %+v", len(won), won)
	}
	c.WaitConverged()
	for i := range c.Members {
		leases, err := c.Admin(i).ListLeases(ctx, connect.NewRequest(&writv1.ListLeasesRequest{Identity: "ci/deploy-api"}))
		if err != nil {
			t.Fatal(err)
		}
		ids, err := c.Admin(i).ListSecretIDs(ctx, connect.NewRequest(&writv1.ListSecretIDsRequest{Accessor: sid.Msg.GetAccessor()}))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(leases.Msg.GetLeases()); n != 1 || leases.Msg.GetLeases()[0].GetId() != won[0].lease {
			t.Errorf("n%d holds %d leases, want only %s", i+1, n, won[0].lease)
		}
		if s := ids.Msg.GetSecretIds(); len(s) != 1 || s[0].GetUses() != 1 || s[0].GetNumUses() != 1 {
			t.Errorf("n%d: secret id %v, want 1/1 uses", i+1, s)
		}
	}
}

// reasonOf is the google.rpc.ErrorInfo reason of a Connect error.
func reasonOf(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return ""
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				return info.GetReason()
			}
		}
	}
	return ""
}
