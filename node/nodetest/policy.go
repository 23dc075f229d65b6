package nodetest

import "github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"

// Policy returns a PolicyService client (admin token) for member i.
func (c *Cluster) Policy(i int) writv1connect.PolicyServiceClient {
	return writv1connect.NewPolicyServiceClient(c.http, c.URL(i), authed(AdminToken))
}
