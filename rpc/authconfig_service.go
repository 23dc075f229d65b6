package rpc

import (
	"context"
	"errors"
	"slices"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// authConfigService manages auth configs. Every call is authenticated by
// the admin interceptor (a human actor).
type authConfigService struct{ d Deps }

// defaultJWTAlgorithms are accepted when a jwt config names none.
var defaultJWTAlgorithms = []string{"RS256", "ES256", "EdDSA"}

func boundClaimsFromAPI(in []*writv1.BoundClaim) []*fsmpb.BoundClaim {
	var out []*fsmpb.BoundClaim
	for _, b := range in {
		out = append(out, &fsmpb.BoundClaim{Claim: b.GetClaim(), Values: b.GetValues()})
	}
	return out
}

func boundClaimsToAPI(in []*fsmpb.BoundClaim) []*writv1.BoundClaim {
	var out []*writv1.BoundClaim
	for _, b := range in {
		out = append(out, &writv1.BoundClaim{Claim: b.GetClaim(), Values: b.GetValues()})
	}
	return out
}

func authConfigFromAPI(in *writv1.AuthConfig) (*fsmpb.AuthConfig, error) {
	if in == nil {
		return nil, invalidf("config is required")
	}
	if err := checkLen("config.name", in.GetName(), 256); err != nil {
		return nil, err
	}
	if in.GetLeewaySeconds() < 0 || in.GetJwksRefreshSeconds() < 0 {
		return nil, invalidf("leeway_seconds and jwks_refresh_seconds must not be negative")
	}
	if in.GetLeewaySeconds() > 600 {
		return nil, invalidf("leeway_seconds is %d; at most 600", in.GetLeewaySeconds())
	}
	if n := in.GetJwksRefreshSeconds(); n != 0 && n < 10 {
		return nil, invalidf("jwks_refresh_seconds is %d; at least 10", n)
	}
	if len(in.GetDescription()) > 1024 {
		return nil, invalidf("description is longer than 1024 bytes")
	}
	algs := in.GetAlgorithms()
	if in.GetType() == authn.MethodJWT && len(algs) == 0 {
		algs = defaultJWTAlgorithms
	}
	return &fsmpb.AuthConfig{
		Name:             in.GetName(),
		Type:             in.GetType(),
		Issuer:           in.GetIssuer(),
		Algorithms:       algs,
		Jwks:             in.GetJwks(),
		JwksFile:         in.GetJwksFile(),
		JwksUrl:          in.GetJwksUrl(),
		JwksRefreshNanos: in.GetJwksRefreshSeconds() * int64(time.Second),
		LeewayNanos:      in.GetLeewaySeconds() * int64(time.Second),
		BoundAudiences:   in.GetBoundAudiences(),
		BoundClaims:      boundClaimsFromAPI(in.GetBoundClaims()),
		EvidenceClaims:   in.GetEvidenceClaims(),
		CaBundlePem:      in.GetCaBundlePem(),
		Description:      in.GetDescription(),
	}, nil
}

func authConfigToAPI(in *fsmpb.AuthConfig) *writv1.AuthConfig {
	if in == nil {
		return nil
	}
	return &writv1.AuthConfig{
		Name:               in.GetName(),
		Type:               in.GetType(),
		Issuer:             in.GetIssuer(),
		Algorithms:         in.GetAlgorithms(),
		Jwks:               in.GetJwks(),
		JwksFile:           in.GetJwksFile(),
		JwksUrl:            in.GetJwksUrl(),
		JwksRefreshSeconds: in.GetJwksRefreshNanos() / int64(time.Second),
		LeewaySeconds:      in.GetLeewayNanos() / int64(time.Second),
		BoundAudiences:     in.GetBoundAudiences(),
		BoundClaims:        boundClaimsToAPI(in.GetBoundClaims()),
		EvidenceClaims:     in.GetEvidenceClaims(),
		CaBundlePem:        in.GetCaBundlePem(),
		Version:            in.GetVersion(),
		CreatedAt:          ts(in.GetCreatedUnixNano()),
		UpdatedAt:          ts(in.GetUpdatedUnixNano()),
		Description:        in.GetDescription(),
	}
}

func (s *authConfigService) PutAuthConfig(ctx context.Context, req *connect.Request[writv1.PutAuthConfigRequest]) (*connect.Response[writv1.PutAuthConfigResponse], error) {
	resp, err := s.put(ctx, req.Msg)
	return resp, toConnect(s.d.Logger, err)
}

func (s *authConfigService) put(ctx context.Context, m *writv1.PutAuthConfigRequest) (*connect.Response[writv1.PutAuthConfigResponse], error) {
	cfg, err := authConfigFromAPI(m.GetConfig())
	if err != nil {
		return nil, err
	}
	// Parse keys and bundles here: a config this node cannot use never
	// reaches the log (Apply checks only the shape).
	vctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = s.d.Authn.ValidateAuthConfig(vctx, cfg)
	cancel()
	if err != nil {
		return nil, invalidf("%v", err)
	}
	admin := &adminService{d: s.d}
	r, err := admin.write(ctx, &fsmpb.Command{Payload: &fsmpb.Command_PutAuthConfig{PutAuthConfig: &fsmpb.PutAuthConfig{
		Config: cfg, ExpectVersion: m.GetExpectVersion(), CreateOnly: m.GetCreateOnly(),
	}}})
	if err != nil {
		return nil, err
	}
	view, err := admin.readAfter(ctx, r.GetIndex())
	if err != nil {
		return nil, err
	}
	stored, _ := view.AuthConfig(cfg.GetName())
	return connect.NewResponse(&writv1.PutAuthConfigResponse{Config: authConfigToAPI(stored), Index: r.GetIndex()}), nil
}

func (s *authConfigService) GetAuthConfig(ctx context.Context, req *connect.Request[writv1.GetAuthConfigRequest]) (*connect.Response[writv1.GetAuthConfigResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	c, ok := view.AuthConfig(req.Msg.GetName())
	if !ok {
		return nil, newError(connect.CodeNotFound, "not_found", "auth config "+quote(req.Msg.GetName())+" not found", nil)
	}
	return connect.NewResponse(&writv1.GetAuthConfigResponse{Config: authConfigToAPI(c), AppliedIndex: view.Index()}), nil
}

func (s *authConfigService) ListAuthConfigs(ctx context.Context, req *connect.Request[writv1.ListAuthConfigsRequest]) (*connect.Response[writv1.ListAuthConfigsResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	out := &writv1.ListAuthConfigsResponse{AppliedIndex: view.Index()}
	for _, c := range view.AuthConfigs() {
		out.Configs = append(out.Configs, authConfigToAPI(c))
	}
	return connect.NewResponse(out), nil
}

func (s *authConfigService) DeleteAuthConfig(ctx context.Context, req *connect.Request[writv1.DeleteAuthConfigRequest]) (*connect.Response[writv1.DeleteAuthConfigResponse], error) {
	if err := checkLen("name", req.Msg.GetName(), 256); err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	admin := &adminService{d: s.d}
	r, err := admin.write(ctx, &fsmpb.Command{Payload: &fsmpb.Command_DeleteAuthConfig{DeleteAuthConfig: &fsmpb.DeleteAuthConfig{Name: req.Msg.GetName()}}})
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(&writv1.DeleteAuthConfigResponse{Index: r.GetIndex()}), nil
}

// checkEnvironment: identities and roles live in one of the configured
// environments.
func (d Deps) checkEnvironment(what, env string) error {
	if !slices.Contains(d.Environments, env) {
		return invalidf("%s environment %q is not one of the configured environments %v", what, env, d.Environments)
	}
	return nil
}

// roleMethodsFromConfigs fills in a role's auth methods from the types of
// the auth configs it names, when the caller listed none.
func roleMethodsFromConfigs(role *fsmpb.Role, lookup func(string) (*fsmpb.AuthConfig, bool)) error {
	if len(role.GetAuthMethods()) > 0 {
		return nil
	}
	for _, name := range role.GetAuthConfigs() {
		c, ok := lookup(name)
		if !ok {
			return withReason(connect.CodeFailedPrecondition, "RESULT_CODE_FAILED_PRECONDITION", "role "+quote(role.GetName())+" names auth config "+quote(name)+", which does not exist")
		}
		if !slices.Contains(role.AuthMethods, c.GetType()) {
			role.AuthMethods = append(role.AuthMethods, c.GetType())
		}
	}
	if len(role.AuthMethods) == 0 {
		return errors.New("rpc: role without methods")
	}
	return nil
}
