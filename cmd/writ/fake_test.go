package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// fakeServer implements the three public services with canned answers and
// records what it was sent, so command tests run over real HTTP without a
// node.
type fakeServer struct {
	// Snapshot streaming is exercised against a real node in node/cluster_test.go.
	writv1connect.UnimplementedClusterServiceHandler
	mu    sync.Mutex
	calls []fakeCall
	resps map[string]proto.Message
	errs  map[string]error
	// onCall, when set, answers instead of resps/errs.
	onCall func(method string, req proto.Message) (proto.Message, error)
}

type fakeCall struct {
	method string
	req    proto.Message
	header http.Header
}

func handle[Req, Res any, PReq interface {
	*Req
	proto.Message
}, PRes interface {
	*Res
	proto.Message
}](f *fakeServer, method string, r *connect.Request[Req]) (*connect.Response[Res], error) {
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{method: method, req: PReq(r.Msg), header: r.Header().Clone()})
	resp, err := f.resps[method], f.errs[method]
	onCall := f.onCall
	f.mu.Unlock()
	if onCall != nil {
		resp, err = onCall(method, PReq(r.Msg))
	}
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return connect.NewResponse(new(Res)), nil
	}
	return connect.NewResponse((*Res)(resp.(PRes))), nil
}

// last returns the last call, failing the test when there was none.
func (f *fakeServer) last(t *testing.T) fakeCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("no call reached the server")
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeServer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// startFake serves f over HTTP/1.1 and h2c, so every --protocol works.
func startFake(t *testing.T, f *fakeServer) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(writv1connect.NewAdminServiceHandler(f))
	mux.Handle(writv1connect.NewAuthzServiceHandler(f))
	mux.Handle(writv1connect.NewClusterServiceHandler(f))
	mux.Handle(writv1connect.NewLeaseServiceHandler(f))
	mux.Handle(writv1connect.NewKeyServiceHandler(f))
	srv := httptest.NewUnstartedServer(mux)
	var ps http.Protocols
	ps.SetHTTP1(true)
	ps.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &ps
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// result is one CLI run.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the command line with env and stdin, as main would.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := runWithClock(ctx, args, strings.NewReader(stdin), &out, &errb, getenv, fixedNow)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func fixedNow() time.Time { return testNow }

func (f *fakeServer) PutIdentity(_ context.Context, r *connect.Request[writv1.PutIdentityRequest]) (*connect.Response[writv1.PutIdentityResponse], error) {
	return handle[writv1.PutIdentityRequest, writv1.PutIdentityResponse](f, "PutIdentity", r)
}

func (f *fakeServer) GetIdentity(_ context.Context, r *connect.Request[writv1.GetIdentityRequest]) (*connect.Response[writv1.GetIdentityResponse], error) {
	return handle[writv1.GetIdentityRequest, writv1.GetIdentityResponse](f, "GetIdentity", r)
}

func (f *fakeServer) ListIdentities(_ context.Context, r *connect.Request[writv1.ListIdentitiesRequest]) (*connect.Response[writv1.ListIdentitiesResponse], error) {
	return handle[writv1.ListIdentitiesRequest, writv1.ListIdentitiesResponse](f, "ListIdentities", r)
}

func (f *fakeServer) DeleteIdentity(_ context.Context, r *connect.Request[writv1.DeleteIdentityRequest]) (*connect.Response[writv1.DeleteIdentityResponse], error) {
	return handle[writv1.DeleteIdentityRequest, writv1.DeleteIdentityResponse](f, "DeleteIdentity", r)
}

func (f *fakeServer) PutRole(_ context.Context, r *connect.Request[writv1.PutRoleRequest]) (*connect.Response[writv1.PutRoleResponse], error) {
	return handle[writv1.PutRoleRequest, writv1.PutRoleResponse](f, "PutRole", r)
}

func (f *fakeServer) GetRole(_ context.Context, r *connect.Request[writv1.GetRoleRequest]) (*connect.Response[writv1.GetRoleResponse], error) {
	return handle[writv1.GetRoleRequest, writv1.GetRoleResponse](f, "GetRole", r)
}

func (f *fakeServer) ListRoles(_ context.Context, r *connect.Request[writv1.ListRolesRequest]) (*connect.Response[writv1.ListRolesResponse], error) {
	return handle[writv1.ListRolesRequest, writv1.ListRolesResponse](f, "ListRoles", r)
}

func (f *fakeServer) DeleteRole(_ context.Context, r *connect.Request[writv1.DeleteRoleRequest]) (*connect.Response[writv1.DeleteRoleResponse], error) {
	return handle[writv1.DeleteRoleRequest, writv1.DeleteRoleResponse](f, "DeleteRole", r)
}

func (f *fakeServer) CreateSecretID(_ context.Context, r *connect.Request[writv1.CreateSecretIDRequest]) (*connect.Response[writv1.CreateSecretIDResponse], error) {
	return handle[writv1.CreateSecretIDRequest, writv1.CreateSecretIDResponse](f, "CreateSecretID", r)
}

func (f *fakeServer) ListSecretIDs(_ context.Context, r *connect.Request[writv1.ListSecretIDsRequest]) (*connect.Response[writv1.ListSecretIDsResponse], error) {
	return handle[writv1.ListSecretIDsRequest, writv1.ListSecretIDsResponse](f, "ListSecretIDs", r)
}

func (f *fakeServer) RevokeSecretID(_ context.Context, r *connect.Request[writv1.RevokeSecretIDRequest]) (*connect.Response[writv1.RevokeSecretIDResponse], error) {
	return handle[writv1.RevokeSecretIDRequest, writv1.RevokeSecretIDResponse](f, "RevokeSecretID", r)
}

func (f *fakeServer) PutPolicySet(_ context.Context, r *connect.Request[writv1.PutPolicySetRequest]) (*connect.Response[writv1.PutPolicySetResponse], error) {
	return handle[writv1.PutPolicySetRequest, writv1.PutPolicySetResponse](f, "PutPolicySet", r)
}

func (f *fakeServer) GetPolicySet(_ context.Context, r *connect.Request[writv1.GetPolicySetRequest]) (*connect.Response[writv1.GetPolicySetResponse], error) {
	return handle[writv1.GetPolicySetRequest, writv1.GetPolicySetResponse](f, "GetPolicySet", r)
}

func (f *fakeServer) ListPolicySets(_ context.Context, r *connect.Request[writv1.ListPolicySetsRequest]) (*connect.Response[writv1.ListPolicySetsResponse], error) {
	return handle[writv1.ListPolicySetsRequest, writv1.ListPolicySetsResponse](f, "ListPolicySets", r)
}

func (f *fakeServer) DeletePolicySet(_ context.Context, r *connect.Request[writv1.DeletePolicySetRequest]) (*connect.Response[writv1.DeletePolicySetResponse], error) {
	return handle[writv1.DeletePolicySetRequest, writv1.DeletePolicySetResponse](f, "DeletePolicySet", r)
}

func (f *fakeServer) GetLease(_ context.Context, r *connect.Request[writv1.GetLeaseRequest]) (*connect.Response[writv1.GetLeaseResponse], error) {
	return handle[writv1.GetLeaseRequest, writv1.GetLeaseResponse](f, "GetLease", r)
}

func (f *fakeServer) ListLeases(_ context.Context, r *connect.Request[writv1.ListLeasesRequest]) (*connect.Response[writv1.ListLeasesResponse], error) {
	return handle[writv1.ListLeasesRequest, writv1.ListLeasesResponse](f, "ListLeases", r)
}

func (f *fakeServer) AuthorizeAndIssue(_ context.Context, r *connect.Request[writv1.AuthorizeAndIssueRequest]) (*connect.Response[writv1.AuthorizeAndIssueResponse], error) {
	return handle[writv1.AuthorizeAndIssueRequest, writv1.AuthorizeAndIssueResponse](f, "AuthorizeAndIssue", r)
}

func (f *fakeServer) Authorize(_ context.Context, r *connect.Request[writv1.AuthorizeRequest]) (*connect.Response[writv1.AuthorizeResponse], error) {
	return handle[writv1.AuthorizeRequest, writv1.AuthorizeResponse](f, "Authorize", r)
}

func (f *fakeServer) Verify(_ context.Context, r *connect.Request[writv1.VerifyRequest]) (*connect.Response[writv1.VerifyResponse], error) {
	return handle[writv1.VerifyRequest, writv1.VerifyResponse](f, "Verify", r)
}

func (f *fakeServer) Renew(_ context.Context, r *connect.Request[writv1.RenewRequest]) (*connect.Response[writv1.RenewResponse], error) {
	return handle[writv1.RenewRequest, writv1.RenewResponse](f, "Renew", r)
}

func (f *fakeServer) Revoke(_ context.Context, r *connect.Request[writv1.RevokeRequest]) (*connect.Response[writv1.RevokeResponse], error) {
	return handle[writv1.RevokeRequest, writv1.RevokeResponse](f, "Revoke", r)
}

func (f *fakeServer) Status(_ context.Context, r *connect.Request[writv1.StatusRequest]) (*connect.Response[writv1.StatusResponse], error) {
	return handle[writv1.StatusRequest, writv1.StatusResponse](f, "Status", r)
}

func (f *fakeServer) Join(_ context.Context, r *connect.Request[writv1.JoinRequest]) (*connect.Response[writv1.JoinResponse], error) {
	return handle[writv1.JoinRequest, writv1.JoinResponse](f, "Join", r)
}

func (f *fakeServer) Leave(_ context.Context, r *connect.Request[writv1.LeaveRequest]) (*connect.Response[writv1.LeaveResponse], error) {
	return handle[writv1.LeaveRequest, writv1.LeaveResponse](f, "Leave", r)
}

func (f *fakeServer) BatchAuthorize(_ context.Context, r *connect.Request[writv1.BatchAuthorizeRequest]) (*connect.Response[writv1.BatchAuthorizeResponse], error) {
	return handle[writv1.BatchAuthorizeRequest, writv1.BatchAuthorizeResponse](f, "BatchAuthorize", r)
}

func (f *fakeServer) Delegate(_ context.Context, r *connect.Request[writv1.DelegateRequest]) (*connect.Response[writv1.DelegateResponse], error) {
	return handle[writv1.DelegateRequest, writv1.DelegateResponse](f, "Delegate", r)
}

func (f *fakeServer) Complete(_ context.Context, r *connect.Request[writv1.CompleteRequest]) (*connect.Response[writv1.CompleteResponse], error) {
	return handle[writv1.CompleteRequest, writv1.CompleteResponse](f, "Complete", r)
}

// WatchRevocations records the call and sends the canned message (a
// *writv1.WatchRevocationsResponse in resps), then ends the stream.
func (f *fakeServer) WatchRevocations(_ context.Context, r *connect.Request[writv1.WatchRevocationsRequest], s *connect.ServerStream[writv1.WatchRevocationsResponse]) error {
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{method: "WatchRevocations", req: r.Msg, header: r.Header().Clone()})
	resp, err := f.resps["WatchRevocations"], f.errs["WatchRevocations"]
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if m, ok := resp.(*writv1.WatchRevocationsResponse); ok {
		return s.Send(m)
	}
	return nil
}

func (f *fakeServer) RotateSigningKey(_ context.Context, r *connect.Request[writv1.RotateSigningKeyRequest]) (*connect.Response[writv1.RotateSigningKeyResponse], error) {
	return handle[writv1.RotateSigningKeyRequest, writv1.RotateSigningKeyResponse](f, "RotateSigningKey", r)
}

func (f *fakeServer) ListSigningKeys(_ context.Context, r *connect.Request[writv1.ListSigningKeysRequest]) (*connect.Response[writv1.ListSigningKeysResponse], error) {
	return handle[writv1.ListSigningKeysRequest, writv1.ListSigningKeysResponse](f, "ListSigningKeys", r)
}
