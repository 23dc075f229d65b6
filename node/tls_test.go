package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

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
		v, err := c.Authz(i, false).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: issued.Msg.GetCredential()}))
		if err != nil || v.Msg.GetActive() {
			t.Fatalf("verify on n%d after revoke: %v %v", i+1, v, err)
		}
	}
	c.WaitConverged()
}
