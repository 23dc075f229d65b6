package rpc

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// healthHandler serves grpc.health.v1.Health/Check over Connect, gRPC and
// gRPC-Web. A node is SERVING when it has a leader within max staleness.
// Watch is not offered: stock probes only call Check.
func healthHandler(d Deps) (string, http.Handler) {
	const procedure = "/grpc.health.v1.Health/Check"
	h := connect.NewUnaryHandler(procedure,
		func(_ context.Context, req *connect.Request[grpc_health_v1.HealthCheckRequest]) (*connect.Response[grpc_health_v1.HealthCheckResponse], error) {
			status := grpc_health_v1.HealthCheckResponse_SERVING
			switch req.Msg.GetService() {
			case "", "writ.v1.AuthzService", "writ.v1.AdminService", "writ.v1.ClusterService":
			default:
				return nil, connect.NewError(connect.CodeNotFound, nil)
			}
			if d.Backend.Ready() != nil {
				status = grpc_health_v1.HealthCheckResponse_NOT_SERVING
			}
			return connect.NewResponse(&grpc_health_v1.HealthCheckResponse{Status: status}), nil
		})
	return "/grpc.health.v1.Health/", h
}
