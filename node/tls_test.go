package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/authn/authntest"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// TestClusterOverTLS: three nodes whose APIs serve HTTPS join each other,
// advertise https, forward writes to the leader over TLS and confirm a
// revocation everywhere.
func TestClusterOverTLS(t *testing.T) {
	ca := authntest.NewCA(t, "api root")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	c := nodetest.New(t, 3, nodetest.Options{
		TLS: &tls.Config{
			Certificates: []tls.Certificate{ca.Issue(t, authntest.Leaf{CN: "writ", ServerAuth: true})},
			ClientAuth:   tls.RequestClientCert, MinVersion: tls.VersionTLS12,
		},
		ClientTLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	})
	proof := setup(t, c)
	ctx := context.Background()
	// Reads are local (stale by default): n2 lists the identity once it has
	// applied setup's writes, which a loaded machine may not have done yet.
	c.WaitConverged()
	st, err := c.Admin(1).ListIdentities(ctx, connect.NewRequest(&writv1.ListIdentitiesRequest{}))
	if err != nil || len(st.Msg.GetIdentities()) != 1 {
		t.Fatalf("identities through n2: %v %v", st, err)
	}
	status, err := c.Members[0].Node.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range status.GetMembers() {
		if !strings.HasPrefix(m.GetApiAddr(), "https://") {
			t.Errorf("member %s advertises %q", m.GetId(), m.GetApiAddr())
		}
	}
	follower := (c.Leader() + 1) % 3
	issued, err := c.Authz(follower, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
	if err != nil || !issued.Msg.GetDecision().GetAllowed() {
		t.Fatalf("issue through a follower: %v %v", issued, err)
	}
	if _, err := c.Authz((follower+1)%3, true).Revoke(ctx, connect.NewRequest(&writv1.RevokeRequest{
		Target: &writv1.RevokeRequest_LeaseId{LeaseId: issued.Msg.GetLease().GetId()},
	})); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	for i := range c.Members {
		// No node may accept the credential once Revoke returned; one that
		// has lost its read lease on a loaded machine fails closed
		// (Unavailable) until it catches up, then must reject it.
		nodetest.Eventually(t, 20*time.Second, fmt.Sprintf("n%d rejects the revoked credential", i+1), func() error {
			v, err := c.Authz(i, false).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: issued.Msg.GetCredential()}))
			switch {
			case err == nil && v.Msg.GetActive():
				t.Fatalf("n%d accepts a credential revoked before: %v", i+1, v)
			case connect.CodeOf(err) == connect.CodeUnavailable:
				return err
			case err != nil:
				t.Fatalf("verify on n%d after revoke: %v", i+1, err)
			}
			return nil
		})
	}
	c.WaitConverged()
}
