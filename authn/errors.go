package authn

import "errors"

// Error is an authentication failure with a stable reason code. Every
// sentinel below is an *Error; functions return them bare or wrapped with
// %w, so callers use errors.Is for a specific failure and Reason /
// IsPermission to map any of them to a client answer.
type Error struct {
	// Reason is a stable snake_case code, safe to send to clients and to
	// record in audit events.
	Reason string
	// Permission is true when the proof was valid but the principal may not
	// log in this way (PermissionDenied); false when the proof itself was
	// rejected (Unauthenticated).
	Permission bool
	// Unavailable is true when the proof could not be checked at all (a
	// JWKS that was never fetched): the caller may retry (Unavailable).
	Unavailable bool
	msg         string
}

func (e *Error) Error() string { return "authn: " + e.msg }

// Authentication failures (Unauthenticated).
var (
	ErrNotBootstrapped   = &Error{Reason: "not_bootstrapped", msg: "cluster is not bootstrapped"}
	ErrUnknownRoleID     = &Error{Reason: "unknown_role_id", msg: "unknown role id"}
	ErrInvalidSecretID   = &Error{Reason: "invalid_secret_id", msg: "invalid secret id"}
	ErrSecretRole        = &Error{Reason: "secret_role_mismatch", msg: "secret id belongs to another role"}
	ErrSecretExpired     = &Error{Reason: "secret_id_expired", msg: "secret id expired"}
	ErrSecretUsedUp      = &Error{Reason: "secret_id_used_up", msg: "secret id has no uses left"}
	ErrCIDRMismatch      = &Error{Reason: "cidr_mismatch", msg: "source address is not allowed for this secret id"}
	ErrInvalidAdminToken = &Error{Reason: "invalid_admin_token", msg: "invalid admin token"}

	// JWT / OIDC.
	ErrMalformedToken  = &Error{Reason: "malformed_token", msg: "token is not a well-formed signed JWT"}
	ErrAlgNotAllowed   = &Error{Reason: "alg_not_allowed", msg: "token signing algorithm is not accepted"}
	ErrUnknownKey      = &Error{Reason: "unknown_key", msg: "token is signed by a key the auth config does not hold"}
	ErrBadSignature    = &Error{Reason: "bad_signature", msg: "token signature does not verify"}
	ErrTokenExpired    = &Error{Reason: "token_expired", msg: "token has expired"}
	ErrTokenNotYet     = &Error{Reason: "token_not_yet_valid", msg: "token is not valid yet"}
	ErrWrongIssuer     = &Error{Reason: "wrong_issuer", msg: "token issuer is not the auth config's"}
	ErrWrongAudience   = &Error{Reason: "wrong_audience", msg: "token audience is not accepted"}
	ErrKeysUnavailable = &Error{Reason: "keys_unavailable", Unavailable: true, msg: "the auth config's keys could not be loaded"}

	// mTLS.
	ErrNoClientCert   = &Error{Reason: "no_client_certificate", msg: "no client certificate was presented (connect over TLS with a certificate)"}
	ErrUntrustedChain = &Error{Reason: "untrusted_certificate", msg: "client certificate does not chain to a trusted anchor"}

	// Every method.
	ErrUnknownRole = &Error{Reason: "unknown_role", msg: "unknown role"}
)

// Authorization failures at login (PermissionDenied): the proof was good,
// the configuration does not let it become a principal.
var (
	ErrMethodNotAllowed    = &Error{Reason: "method_not_allowed", Permission: true, msg: "auth method not allowed for this role"}
	ErrIdentityNotFound    = &Error{Reason: "identity_not_found", Permission: true, msg: "the role's identity does not exist"}
	ErrIdentityDisabled    = &Error{Reason: "identity_disabled", Permission: true, msg: "identity is disabled"}
	ErrEnvironmentMismatch = &Error{Reason: "environment_mismatch", Permission: true, msg: "identity environment differs from the role's"}
	ErrClaimMismatch       = &Error{Reason: "claim_mismatch", Permission: true, msg: "a bound claim does not match"}
	ErrSPIFFEIDMismatch    = &Error{Reason: "spiffe_id_mismatch", Permission: true, msg: "SPIFFE ID is outside the role's bound patterns"}
	ErrSourceNotAllowed    = &Error{Reason: "source_not_allowed", Permission: true, msg: "source address is outside the role's bound CIDRs"}
	ErrIdentityTemplate    = &Error{Reason: "identity_template", Permission: true, msg: "the proof does not render the role's identity template"}
)

// Reason returns the reason code of the authn error in err's chain, or ""
// when err is not an authn failure.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// IsUnavailable reports whether err is an authn failure that means "could
// not check the proof now" (retry later).
func IsUnavailable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Unavailable
}

// IsPermission reports whether err is an authn failure that means "valid
// proof, not allowed" rather than "proof rejected".
func IsPermission(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permission
}
