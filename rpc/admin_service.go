package rpc

import (
	"context"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// adminService: every call is authenticated by the admin interceptor.
type adminService struct{ d Deps }

// write proposes one command and returns its result, mapped to an error when not OK.
func (s *adminService) write(ctx context.Context, cmd *fsmpb.Command) (*fsmpb.Result, error) {
	requestID, err := newID(s.d.Rand, "r_")
	if err != nil {
		return nil, err
	}
	if cmd.Header == nil {
		cmd.Header = &fsmpb.Header{}
	}
	cmd.Header.RequestId = requestID
	results, err := s.d.Backend.Propose(ctx, []*fsmpb.Command{cmd}, ProposeOptions{})
	if err != nil {
		return nil, err
	}
	if err := resultError(results[0]); err != nil {
		return nil, err
	}
	return results[0], nil
}

// readAfter returns a view that includes index (read your own write, even when
// the write was forwarded to the leader).
func (s *adminService) readAfter(ctx context.Context, index uint64) (*fsm.View, error) {
	return s.d.Backend.Read(ctx, ReadOptions{MinIndex: index})
}

func (s *adminService) PutIdentity(ctx context.Context, req *connect.Request[writv1.PutIdentityRequest]) (*connect.Response[writv1.PutIdentityResponse], error) {
	ident, err := identityFromAPI(req.Msg.GetIdentity())
	if err == nil {
		err = s.d.checkEnvironment("identity", ident.GetEnvironment())
	}
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	r, err := s.write(ctx, &fsmpb.Command{Payload: &fsmpb.Command_PutIdentity{PutIdentity: &fsmpb.PutIdentity{
		Identity: ident, ExpectVersion: req.Msg.GetExpectVersion(), CreateOnly: req.Msg.GetCreateOnly(),
	}}})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	view, err := s.readAfter(ctx, r.GetIndex())
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	stored, _ := view.Identity(ident.GetId())
	return connect.NewResponse(&writv1.PutIdentityResponse{Identity: identityToAPI(stored), Index: r.GetIndex()}), nil
}

func (s *adminService) GetIdentity(ctx context.Context, req *connect.Request[writv1.GetIdentityRequest]) (*connect.Response[writv1.GetIdentityResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	ident, ok := view.Identity(req.Msg.GetId())
	if !ok {
		return nil, newError(connect.CodeNotFound, "not_found", "identity "+quote(req.Msg.GetId())+" not found", nil)
	}
	return connect.NewResponse(&writv1.GetIdentityResponse{Identity: identityToAPI(ident), AppliedIndex: view.Index()}), nil
}

func (s *adminService) ListIdentities(ctx context.Context, req *connect.Request[writv1.ListIdentitiesRequest]) (*connect.Response[writv1.ListIdentitiesResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	out := &writv1.ListIdentitiesResponse{AppliedIndex: view.Index()}
	for _, i := range view.Identities() {
		out.Identities = append(out.Identities, identityToAPI(i))
	}
	return connect.NewResponse(out), nil
}

func (s *adminService) DeleteIdentity(ctx context.Context, req *connect.Request[writv1.DeleteIdentityRequest]) (*connect.Response[writv1.DeleteIdentityResponse], error) {
	if err := checkLen("id", req.Msg.GetId(), 256); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	r, err := s.write(ctx, &fsmpb.Command{Payload: &fsmpb.Command_DeleteIdentity{DeleteIdentity: &fsmpb.DeleteIdentity{Id: req.Msg.GetId()}}})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(&writv1.DeleteIdentityResponse{Index: r.GetIndex()}), nil
}

func (s *adminService) PutRole(ctx context.Context, req *connect.Request[writv1.PutRoleRequest]) (*connect.Response[writv1.PutRoleResponse], error) {
	role, err := roleFromAPI(req.Msg.GetRole())
	if err == nil {
		err = s.d.checkEnvironment("role", role.GetEnvironment())
	}
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	if len(role.GetAuthMethods()) == 0 || role.RoleId == "" {
		view, err := s.d.Backend.Read(ctx, ReadOptions{})
		if err != nil {
			return nil, toConnect(s.d.Logger, err)
		}
		if err := roleMethodsFromConfigs(role, view.AuthConfig); err != nil {
			return nil, toConnect(s.d.Logger, err)
		}
		// Keep the role id of an existing role; assign one to a new role.
		if role.RoleId == "" {
			if old, ok := view.Role(role.GetName()); ok {
				role.RoleId = old.GetRoleId()
			} else if role.RoleId, err = authn.NewRoleID(s.d.Rand); err != nil {
				return nil, toConnect(s.d.Logger, err)
			}
		}
	}
	r, err := s.write(ctx, &fsmpb.Command{Payload: &fsmpb.Command_PutRole{PutRole: &fsmpb.PutRole{
		Role: role, ExpectVersion: req.Msg.GetExpectVersion(), CreateOnly: req.Msg.GetCreateOnly(),
	}}})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	view, err := s.readAfter(ctx, r.GetIndex())
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	stored, _ := view.Role(role.GetName())
	return connect.NewResponse(&writv1.PutRoleResponse{Role: roleToAPI(stored), Index: r.GetIndex()}), nil
}

func (s *adminService) GetRole(ctx context.Context, req *connect.Request[writv1.GetRoleRequest]) (*connect.Response[writv1.GetRoleResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	role, ok := view.Role(req.Msg.GetName())
	if !ok {
		return nil, newError(connect.CodeNotFound, "not_found", "role "+quote(req.Msg.GetName())+" not found", nil)
	}
	return connect.NewResponse(&writv1.GetRoleResponse{Role: roleToAPI(role), AppliedIndex: view.Index()}), nil
}

func (s *adminService) ListRoles(ctx context.Context, req *connect.Request[writv1.ListRolesRequest]) (*connect.Response[writv1.ListRolesResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	out := &writv1.ListRolesResponse{AppliedIndex: view.Index()}
	for _, r := range view.Roles() {
		out.Roles = append(out.Roles, roleToAPI(r))
	}
	return connect.NewResponse(out), nil
}

func (s *adminService) DeleteRole(ctx context.Context, req *connect.Request[writv1.DeleteRoleRequest]) (*connect.Response[writv1.DeleteRoleResponse], error) {
	if err := checkLen("name", req.Msg.GetName(), 256); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	r, err := s.write(ctx, &fsmpb.Command{Payload: &fsmpb.Command_DeleteRole{DeleteRole: &fsmpb.DeleteRole{Name: req.Msg.GetName()}}})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(&writv1.DeleteRoleResponse{Index: r.GetIndex()}), nil
}

func (s *adminService) CreateSecretID(ctx context.Context, req *connect.Request[writv1.CreateSecretIDRequest]) (*connect.Response[writv1.CreateSecretIDResponse], error) {
	m := req.Msg
	if err := checkLen("role", m.GetRole(), 256); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	if m.GetTtlSeconds() < 0 {
		return nil, toConnect(s.d.Logger, invalidf("ttl_seconds must not be negative"))
	}
	if len(m.GetCidrs()) > 32 || len(m.GetMetadata()) > 32 {
		return nil, toConnect(s.d.Logger, invalidf("at most 32 cidrs and 32 metadata entries"))
	}
	for _, c := range m.GetCidrs() {
		if _, err := parsePrefix(c); err != nil {
			return nil, toConnect(s.d.Logger, invalidf("cidr %q: %v", c, err))
		}
	}
	view, err := s.d.Backend.Read(ctx, ReadOptions{})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	secret, accessor, err := authn.NewSecretID(s.d.Rand)
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	r, err := s.write(ctx, &fsmpb.Command{Payload: &fsmpb.Command_CreateSecretId{CreateSecretId: &fsmpb.CreateSecretID{
		SecretId: &fsmpb.SecretID{
			Accessor:   accessor,
			Role:       m.GetRole(),
			SecretHmac: authn.HashSecretID(view.HMACKey(), secret),
			NumUses:    m.GetNumUses(),
			Cidrs:      m.GetCidrs(),
			Metadata:   m.GetMetadata(),
		},
		TtlNanos: m.GetTtlSeconds() * int64(time.Second),
	}}})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	out := &writv1.CreateSecretIDResponse{SecretId: secret, Accessor: accessor, Index: r.GetIndex()}
	if after, err := s.readAfter(ctx, r.GetIndex()); err == nil {
		if sid, ok := after.SecretIDByAccessor(accessor); ok {
			out.ExpiresAt = ts(sid.GetExpiresUnixNano())
		}
	}
	return connect.NewResponse(out), nil
}

func (s *adminService) ListSecretIDs(ctx context.Context, req *connect.Request[writv1.ListSecretIDsRequest]) (*connect.Response[writv1.ListSecretIDsResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	out := &writv1.ListSecretIDsResponse{AppliedIndex: view.Index()}
	if acc := req.Msg.GetAccessor(); acc != "" {
		// Look one up by accessor (the role, if given, must match).
		if sid, ok := view.SecretIDByAccessor(acc); ok && (req.Msg.GetRole() == "" || sid.GetRole() == req.Msg.GetRole()) {
			out.SecretIds = append(out.SecretIds, secretIDToAPI(sid))
		}
		return connect.NewResponse(out), nil
	}
	for _, sid := range view.SecretIDs(req.Msg.GetRole()) {
		out.SecretIds = append(out.SecretIds, secretIDToAPI(sid))
	}
	return connect.NewResponse(out), nil
}

func (s *adminService) RevokeSecretID(ctx context.Context, req *connect.Request[writv1.RevokeSecretIDRequest]) (*connect.Response[writv1.RevokeSecretIDResponse], error) {
	if err := checkLen("accessor", req.Msg.GetAccessor(), 128); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	r, err := s.write(ctx, &fsmpb.Command{Payload: &fsmpb.Command_RevokeSecretId{RevokeSecretId: &fsmpb.RevokeSecretID{Accessor: req.Msg.GetAccessor()}}})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(&writv1.RevokeSecretIDResponse{Index: r.GetIndex()}), nil
}

// MaxPolicyBytes bounds one policy set's Cedar text (authz's own bound).
const MaxPolicyBytes = authz.MaxPolicySetBytes

func (s *adminService) PutPolicySet(ctx context.Context, req *connect.Request[writv1.PutPolicySetRequest]) (*connect.Response[writv1.PutPolicySetResponse], error) {
	ps := req.Msg.GetPolicySet()
	if err := checkLen("policy_set.name", ps.GetName(), 128); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	if len(ps.GetCedar()) > MaxPolicyBytes {
		return nil, toConnect(s.d.Logger, invalidf("policy text is %d bytes; at most %d", len(ps.GetCedar()), MaxPolicyBytes))
	}
	// Validate against the schema before proposing: an invalid set never
	// reaches the log (policy_service.go, "why not in Apply").
	if _, err := s.d.Schema.Validate(ps.GetName(), 0, []byte(ps.GetCedar())); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	r, err := s.write(ctx, &fsmpb.Command{Payload: &fsmpb.Command_PutPolicySet{PutPolicySet: &fsmpb.PutPolicySet{
		PolicySet:     &fsmpb.PolicySet{Name: ps.GetName(), Cedar: ps.GetCedar(), Description: ps.GetDescription()},
		ExpectVersion: req.Msg.GetExpectVersion(),
		KeepVersions:  PolicyHistoryVersions,
	}}})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	view, err := s.readAfter(ctx, r.GetIndex())
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	stored, _ := view.PolicySet(ps.GetName())
	return connect.NewResponse(&writv1.PutPolicySetResponse{PolicySet: policySetToAPI(stored), Index: r.GetIndex()}), nil
}

func (s *adminService) GetPolicySet(ctx context.Context, req *connect.Request[writv1.GetPolicySetRequest]) (*connect.Response[writv1.GetPolicySetResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	ps, ok := view.PolicySet(req.Msg.GetName())
	if v := req.Msg.GetVersion(); v != 0 {
		ps, ok = view.PolicySetVersion(req.Msg.GetName(), v)
	}
	if !ok {
		return nil, newError(connect.CodeNotFound, "not_found", "policy set "+quote(req.Msg.GetName())+" not found", nil)
	}
	return connect.NewResponse(&writv1.GetPolicySetResponse{PolicySet: policySetToAPI(ps), AppliedIndex: view.Index()}), nil
}

func (s *adminService) ListPolicySets(ctx context.Context, req *connect.Request[writv1.ListPolicySetsRequest]) (*connect.Response[writv1.ListPolicySetsResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	out := &writv1.ListPolicySetsResponse{AppliedIndex: view.Index()}
	for _, ps := range view.PolicySets() {
		out.PolicySets = append(out.PolicySets, policySetToAPI(ps))
	}
	return connect.NewResponse(out), nil
}

func (s *adminService) DeletePolicySet(ctx context.Context, req *connect.Request[writv1.DeletePolicySetRequest]) (*connect.Response[writv1.DeletePolicySetResponse], error) {
	if err := checkLen("name", req.Msg.GetName(), 128); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	r, err := s.write(ctx, &fsmpb.Command{Payload: &fsmpb.Command_DeletePolicySet{DeletePolicySet: &fsmpb.DeletePolicySet{Name: req.Msg.GetName()}}})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(&writv1.DeletePolicySetResponse{Index: r.GetIndex()}), nil
}

func (s *adminService) GetLease(ctx context.Context, req *connect.Request[writv1.GetLeaseRequest]) (*connect.Response[writv1.GetLeaseResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	lease, reason := view.CheckLease(req.Msg.GetId(), s.d.Clock.Now())
	if lease == nil {
		return nil, newError(connect.CodeNotFound, "not_found", "lease "+quote(req.Msg.GetId())+" not found", nil)
	}
	return connect.NewResponse(&writv1.GetLeaseResponse{Lease: leaseToAPI(lease, reason), AppliedIndex: view.Index()}), nil
}

func (s *adminService) ListLeases(ctx context.Context, req *connect.Request[writv1.ListLeasesRequest]) (*connect.Response[writv1.ListLeasesResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	limit := int(req.Msg.GetLimit())
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	now := s.d.Clock.Now()
	out := &writv1.ListLeasesResponse{AppliedIndex: view.Index()}
	for _, l := range view.Leases(req.Msg.GetIdentity(), limit) {
		_, reason := view.CheckLease(l.GetId(), now)
		out.Leases = append(out.Leases, leaseToAPI(l, reason))
	}
	return connect.NewResponse(out), nil
}
