package rpc

import (
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// Conversions between the API messages (writ.v1, a public contract) and the
// log records (writ.fsm.v1, a storage format). They are kept apart so either
// can evolve without breaking the other.

func ts(unixNano int64) *timestamppb.Timestamp {
	if unixNano == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, unixNano))
}

func identityStatus(s fsmpb.IdentityStatus) string {
	if s == fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED {
		return "disabled"
	}
	return "active"
}

func identityToAPI(in *fsmpb.Identity) *writv1.Identity {
	if in == nil {
		return nil
	}
	return &writv1.Identity{
		Id:          in.GetId(),
		Kind:        in.GetKind(),
		Owner:       in.GetOwner(),
		Environment: in.GetEnvironment(),
		Attributes:  in.GetAttributes(),
		Status:      identityStatus(in.GetStatus()),
		Epoch:       in.GetEpoch(),
		Version:     in.GetVersion(),
		CreatedAt:   ts(in.GetCreatedUnixNano()),
		UpdatedAt:   ts(in.GetUpdatedUnixNano()),
		Description: in.GetDescription(),

		MaxLiveLeases: in.GetMaxLiveLeases(),
	}
}

func identityFromAPI(in *writv1.Identity) (*fsmpb.Identity, error) {
	if in == nil {
		return nil, invalidf("identity is required")
	}
	var status fsmpb.IdentityStatus
	switch in.GetStatus() {
	case "", "active":
		status = fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE
	case "disabled":
		status = fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED
	default:
		return nil, invalidf("identity status %q: want active or disabled", in.GetStatus())
	}
	if err := checkLen("identity id", in.GetId(), 256); err != nil {
		return nil, err
	}
	if len(in.GetAttributes()) > 64 {
		return nil, invalidf("identity has %d attributes; at most 64", len(in.GetAttributes()))
	}
	return &fsmpb.Identity{
		Id:          in.GetId(),
		Kind:        in.GetKind(),
		Owner:       in.GetOwner(),
		Environment: in.GetEnvironment(),
		Attributes:  in.GetAttributes(),
		Status:      status,
		Description: in.GetDescription(),

		MaxLiveLeases: in.GetMaxLiveLeases(),
	}, nil
}

func roleToAPI(in *fsmpb.Role) *writv1.Role {
	if in == nil {
		return nil
	}
	return &writv1.Role{
		Name:               in.GetName(),
		Environment:        in.GetEnvironment(),
		AuthMethods:        in.GetAuthMethods(),
		Identity:           in.GetIdentity(),
		RoleId:             in.GetRoleId(),
		DefaultTtlSeconds:  in.GetDefaultTtlNanos() / int64(time.Second),
		MaxTtlSeconds:      in.GetMaxTtlNanos() / int64(time.Second),
		MaxRenewals:        in.GetMaxRenewals(),
		MaxLiveLeases:      in.GetMaxLiveLeases(),
		Epoch:              in.GetEpoch(),
		Version:            in.GetVersion(),
		CreatedAt:          ts(in.GetCreatedUnixNano()),
		UpdatedAt:          ts(in.GetUpdatedUnixNano()),
		IdentityTemplate:   in.GetIdentityTemplate(),
		AuthConfigs:        in.GetAuthConfigs(),
		BoundClaims:        boundClaimsToAPI(in.GetBoundClaims()),
		BoundSpiffeIds:     in.GetBoundSpiffeIds(),
		BoundCidrs:         in.GetBoundCidrs(),
		MaxDelegationDepth: in.GetMaxDelegationDepth(),
	}
}

// Role TTL defaults when a put leaves them zero.
const (
	defaultRoleTTL    = 15 * time.Minute
	defaultRoleMaxTTL = time.Hour
	maxRoleTTL        = 30 * 24 * time.Hour
)

func roleFromAPI(in *writv1.Role) (*fsmpb.Role, error) {
	if in == nil {
		return nil, invalidf("role is required")
	}
	if err := checkLen("role name", in.GetName(), 256); err != nil {
		return nil, err
	}
	if in.GetDefaultTtlSeconds() < 0 || in.GetMaxTtlSeconds() < 0 {
		return nil, invalidf("ttls must not be negative")
	}
	def := time.Duration(in.GetDefaultTtlSeconds()) * time.Second
	maxTTL := time.Duration(in.GetMaxTtlSeconds()) * time.Second
	if def == 0 {
		def = defaultRoleTTL
	}
	if maxTTL == 0 {
		maxTTL = max(defaultRoleMaxTTL, def)
	}
	if maxTTL > maxRoleTTL {
		return nil, invalidf("max ttl %s is longer than %s", maxTTL, maxRoleTTL)
	}
	methods := in.GetAuthMethods()
	if len(methods) == 0 && len(in.GetAuthConfigs()) == 0 {
		methods = []string{"approle"}
	}
	return &fsmpb.Role{
		Name:               in.GetName(),
		Environment:        in.GetEnvironment(),
		AuthMethods:        methods,
		Identity:           in.GetIdentity(),
		RoleId:             in.GetRoleId(),
		DefaultTtlNanos:    int64(def),
		MaxTtlNanos:        int64(maxTTL),
		MaxRenewals:        in.GetMaxRenewals(),
		MaxLiveLeases:      in.GetMaxLiveLeases(),
		IdentityTemplate:   in.GetIdentityTemplate(),
		AuthConfigs:        in.GetAuthConfigs(),
		BoundClaims:        boundClaimsFromAPI(in.GetBoundClaims()),
		BoundSpiffeIds:     in.GetBoundSpiffeIds(),
		BoundCidrs:         in.GetBoundCidrs(),
		MaxDelegationDepth: in.GetMaxDelegationDepth(),
	}, nil
}

func secretIDToAPI(in *fsmpb.SecretID) *writv1.SecretIDInfo {
	return &writv1.SecretIDInfo{
		Accessor:  in.GetAccessor(),
		Role:      in.GetRole(),
		NumUses:   in.GetNumUses(),
		Uses:      in.GetUses(),
		ExpiresAt: ts(in.GetExpiresUnixNano()),
		Cidrs:     in.GetCidrs(),
		CreatedAt: ts(in.GetCreatedUnixNano()),
		Metadata:  in.GetMetadata(),
	}
}

func policySetToAPI(in *fsmpb.PolicySet) *writv1.PolicySet {
	if in == nil {
		return nil
	}
	return &writv1.PolicySet{
		Name:           in.GetName(),
		Version:        in.GetVersion(),
		Cedar:          in.GetCedar(),
		Description:    in.GetDescription(),
		ActivatedAt:    ts(in.GetActivatedUnixNano()),
		ActivatedIndex: in.GetActivatedIndex(),
		RolledBackFrom: in.GetRolledBackFrom(),
	}
}

func scopeToAPI(in *fsmpb.Scope) *writv1.Scope {
	if in == nil {
		return nil
	}
	out := &writv1.Scope{Actions: in.GetActions()}
	for _, r := range in.GetResources() {
		out.Resources = append(out.Resources, &writv1.Resource{Type: r.GetType(), Id: r.GetId()})
	}
	return out
}

// leaseToAPI renders a lease with the status the reader sees at now
// (reason is the fsm.View.CheckLease verdict, "" when valid).
func leaseToAPI(in *fsmpb.Lease, reason string) *writv1.Lease {
	if in == nil {
		return nil
	}
	status := "active"
	switch reason {
	case "":
	case "revoked":
		status = "revoked"
	case "completed":
		status = "completed"
	case "expired":
		status = "expired"
	default:
		status = "invalidated"
	}
	return &writv1.Lease{
		Id:            in.GetId(),
		Identity:      in.GetIdentity(),
		Role:          in.GetRole(),
		Owner:         in.GetOwner(),
		Environment:   in.GetEnvironment(),
		Scope:         scopeToAPI(in.GetScope()),
		IssuedAt:      ts(in.GetIssuedUnixNano()),
		ExpiresAt:     ts(in.GetExpiresUnixNano()),
		MaxExpiresAt:  ts(in.GetMaxExpiresUnixNano()),
		Renewals:      in.GetRenewals(),
		Parent:        in.GetParent(),
		DecisionId:    in.GetDecisionId(),
		PolicySet:     in.GetPolicySet(),
		PolicyVersion: in.GetPolicyVersion(),
		Status:        status,
		StatusReason:  reason,
		IssuedIndex:   in.GetIssuedIndex(),
		AuthMethod:    in.GetAuthMethod(),
		Depth:         in.GetDepth(),
	}
}

// structMap decodes an optional Struct into plain Go values.
func structMap(s *structpb.Struct) map[string]any {
	if s == nil {
		return nil
	}
	return s.AsMap()
}

func checkLen(what, s string, maxLen int) error {
	if s == "" {
		return invalidf("%s is required", what)
	}
	if len(s) > maxLen {
		return invalidf("%s is %d bytes; at most %d", what, len(s), maxLen)
	}
	return nil
}
