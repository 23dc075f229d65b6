// Package authn turns a proof (an AppRole secret, and later a JWT or a client
// certificate) into a verified Principal plus the evidence that policies see
// as context.auth.
//
// Every method is a pure function of a read view of the replicated state,
// the proof and the time: no I/O, no clock reads, no writes. Anything that
// must change state because of a login (consuming a secret id use) is
// returned for the caller to propose through Raft; Apply is where it is
// enforced. See DESIGN.md.
package authn

import "github.com/writ-dev/writ/fsm/fsmpb"

// Auth method names, as listed in fsmpb.Role.AuthMethods and reported in
// Principal.Method and lease records.
const (
	MethodAppRole = "approle"
	// MethodJWT (JWT/OIDC: Kubernetes, CI, SPIFFE JWT-SVIDs) is not
	// implemented yet; the name is reserved so roles can be validated.
	MethodJWT = "jwt"
	// MethodMTLS (X.509 / SPIFFE client certificates) is not implemented yet.
	MethodMTLS = "mtls"
)

// KnownMethod reports whether name is an auth method Writ defines.
func KnownMethod(name string) bool {
	switch name {
	case MethodAppRole, MethodJWT, MethodMTLS:
		return true
	}
	return false
}

// State is the read view authn needs. The fsm read view satisfies it.
// Implementations must be safe for concurrent use; records they return
// are shared and must not be modified.
type State interface {
	Bootstrapped() bool
	// AdminTokenSHA256 is SHA-256 of the admin token.
	AdminTokenSHA256() []byte
	// HMACKey is the cluster key secret ids are hashed with.
	HMACKey() []byte
	RoleByRoleID(roleID string) (*fsmpb.Role, bool)
	// SecretIDByHMAC finds a secret id by HMAC-SHA256(HMACKey, secret).
	SecretIDByHMAC(h []byte) (*fsmpb.SecretID, bool)
	Identity(id string) (*fsmpb.Identity, bool)
}

// Principal is who a proof established, whatever the method.
type Principal struct {
	Identity *fsmpb.Identity
	Role     *fsmpb.Role
	Method   string
	// SecretAccessor (AppRole) names the secret id the caller must consume
	// in the same Raft command that issues the lease (IssueLease's
	// consume_secret_accessor). Use limits are enforced there, not here.
	SecretAccessor string
	// Evidence is what policies see as context.auth. Values are strings.
	// It never contains a secret.
	Evidence map[string]any
}

// Evidence keys common to every method.
const (
	EvidenceMethod   = "method"
	EvidenceRole     = "role"
	EvidenceSourceIP = "source_ip" // only present when the source is known
)
