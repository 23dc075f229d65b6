// Package authn turns a proof (an AppRole secret, a JWT, a client
// certificate) into a verified Principal plus the evidence that policies see
// as context.auth, and marks who acts on a request (Actor: human or machine).
//
// Every method is a function of a read view of the replicated state, the
// proof and the time: no clock reads, no writes. Anything that must change
// state because of a login (consuming a secret id use) is returned for the
// caller to propose through Raft; Apply is where it is enforced. The one
// I/O is loading a JWT auth config's keys (a JWKS file or URL), which the
// Authenticator caches and refreshes off the login path. See DESIGN.md.
package authn

import "github.com/writ-dev/writ/fsm/fsmpb"

// Auth method names, as listed in fsmpb.Role.AuthMethods and reported in
// Principal.Method and lease records.
const (
	MethodAppRole = "approle"
	// MethodJWT: JWT/OIDC tokens (Kubernetes service-account tokens, CI
	// OIDC tokens, SPIFFE JWT-SVIDs) verified against an auth config.
	MethodJWT = "jwt"
	// MethodMTLS: X.509 client certificates (SPIFFE X.509-SVIDs or plain
	// subjects) verified against an auth config's trust anchors.
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

type identityState interface {
	Identity(id string) (*fsmpb.Identity, bool)
}

// RoleState is the read view JWT and mTLS logins need: the proof names a
// role, the role names auth configs. The fsm read view satisfies it; the
// same concurrency rules as State apply.
type RoleState interface {
	Bootstrapped() bool
	Role(name string) (*fsmpb.Role, bool)
	AuthConfig(name string) (*fsmpb.AuthConfig, bool)
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
	// Evidence is what policies see as context.auth: strings, except
	// "claims", a record of strings and sets of strings. It never contains a
	// secret or a whole token.
	Evidence map[string]any
}

// Evidence keys common to every method.
const (
	EvidenceMethod   = "method"
	EvidenceRole     = "role"
	EvidenceSourceIP = "source_ip" // only present when the source is known
	// JWT and mTLS: the auth config that verified the proof.
	EvidenceAuthConfig = "auth_config"
	// JWT: "iss" and "sub"; mTLS: the certificate's issuer and subject DNs.
	EvidenceIssuer  = "issuer"
	EvidenceSubject = "subject"
	// JWT: the auth config's evidence_claims, by alias.
	EvidenceClaims = "claims"
	// JWT-SVID subject or X.509-SVID URI SAN, and its trust domain.
	EvidenceSPIFFEID    = "spiffe_id"
	EvidenceTrustDomain = "trust_domain"
	// mTLS: SHA-256 of the leaf certificate (DER), lowercase hex.
	EvidenceCertFingerprint = "cert_fingerprint"
)
