package nodetest

import (
	"connectrpc.com/connect"

	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// Lease returns a LeaseService client for member i (delegation, completion
// and the revocation stream need no admin token).
func (c *Cluster) Lease(i int) writv1connect.LeaseServiceClient {
	return writv1connect.NewLeaseServiceClient(c.http, "http://"+c.Members[i].APIAddr)
}

// Keys returns an admin KeyService client for member i.
func (c *Cluster) Keys(i int) writv1connect.KeyServiceClient {
	return writv1connect.NewKeyServiceClient(c.http, "http://"+c.Members[i].APIAddr, authed(AdminToken))
}

// HTTP is the cluster's HTTP client (30 s timeout): streams that outlive it
// need their own.
func (c *Cluster) HTTP() connect.HTTPClient { return c.http }
