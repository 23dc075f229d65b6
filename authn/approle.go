package authn

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// maxProofLen bounds role and secret ids; anything longer cannot match.
const maxProofLen = 512

// Evidence keys specific to AppRole.
const EvidenceSecretAccessor = "secret_accessor"

// AppRoleProof is an AppRole login: a role's public role id and one of its
// secret ids, plus the address the request came from.
type AppRoleProof struct {
	RoleID   string
	SecretID string
	// Source is the caller's address; the zero value means unknown, which
	// fails any CIDR restriction.
	Source netip.Addr
}

// LoginAppRole checks p against st at now and returns the principal it
// proves. Failures are *Error sentinels (see errors.go). An unknown secret
// id and a wrong one take the same path and return the same
// ErrInvalidSecretID: the secret is only ever looked up by its keyed hash.
//
// The use count check here is advisory: two concurrent logins may both see
// one use left. The authoritative check is in Apply, which consumes
// Principal.SecretAccessor atomically with the lease it issues.
func LoginAppRole(st State, p AppRoleProof, now time.Time) (*Principal, error) {
	if !st.Bootstrapped() {
		return nil, ErrNotBootstrapped
	}
	key := st.HMACKey()
	if len(key) == 0 {
		// Hashing with an empty key would make stored hashes guessable.
		return nil, ErrNotBootstrapped
	}
	if p.RoleID == "" || len(p.RoleID) > maxProofLen {
		return nil, ErrUnknownRoleID
	}
	role, ok := st.RoleByRoleID(p.RoleID)
	if !ok || role == nil {
		return nil, ErrUnknownRoleID
	}
	if !slices.Contains(role.GetAuthMethods(), MethodAppRole) {
		return nil, fmt.Errorf("%w: role %q", ErrMethodNotAllowed, role.GetName())
	}

	if p.SecretID == "" || len(p.SecretID) > maxProofLen {
		return nil, ErrInvalidSecretID
	}
	h := HashSecretID(key, p.SecretID)
	sec, ok := st.SecretIDByHMAC(h)
	// The lookup already matched on h; the constant-time comparison keeps
	// that true whatever index the state uses (a prefix, a truncated key).
	if !ok || sec == nil || subtle.ConstantTimeCompare(sec.GetSecretHmac(), h) != 1 {
		return nil, ErrInvalidSecretID
	}
	// Details below go to a caller who holds a real secret id, so they may
	// be specific, but never name another role.
	if sec.GetRole() != role.GetName() {
		return nil, ErrSecretRole
	}
	if exp := sec.GetExpiresUnixNano(); exp != 0 && now.UnixNano() >= exp {
		return nil, ErrSecretExpired
	}
	if n := sec.GetNumUses(); n > 0 && sec.GetUses() >= n {
		return nil, ErrSecretUsedUp
	}
	if cidrs := sec.GetCidrs(); len(cidrs) > 0 && !sourceAllowed(cidrs, p.Source) {
		return nil, ErrCIDRMismatch
	}
	if err := checkRoleSource(role, p.Source); err != nil {
		return nil, err
	}

	ident, err := roleIdentity(st, role)
	if err != nil {
		return nil, err
	}
	ev := map[string]any{
		EvidenceMethod:         MethodAppRole,
		EvidenceRole:           role.GetName(),
		EvidenceSecretAccessor: sec.GetAccessor(),
	}
	if p.Source.IsValid() {
		ev[EvidenceSourceIP] = p.Source.Unmap().WithZone("").String()
	}
	return &Principal{
		Identity:       ident,
		Role:           role,
		Method:         MethodAppRole,
		SecretAccessor: sec.GetAccessor(),
		Evidence:       ev,
	}, nil
}

// roleIdentity resolves the fixed identity a login through role becomes
// and checks it may log in.
func roleIdentity(st identityState, role *fsmpb.Role) (*fsmpb.Identity, error) {
	id := role.GetIdentity()
	if id == "" {
		return nil, fmt.Errorf("%w: role %q names no identity", ErrIdentityNotFound, role.GetName())
	}
	return checkIdentity(st, role, id)
}

// checkIdentity: the identity exists, is active and lives in the role's
// environment. Every method ends here, so the identity rules cannot drift
// between methods.
func checkIdentity(st identityState, role *fsmpb.Role, id string) (*fsmpb.Identity, error) {
	ident, ok := st.Identity(id)
	if !ok || ident == nil {
		return nil, fmt.Errorf("%w: role %q names identity %q", ErrIdentityNotFound, role.GetName(), id)
	}
	// Fail closed: only an explicitly active identity logs in.
	if ident.GetStatus() != fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE {
		return nil, fmt.Errorf("%w: %q", ErrIdentityDisabled, id)
	}
	if ident.GetEnvironment() != role.GetEnvironment() {
		return nil, fmt.Errorf("%w: identity %q is in %q, role %q in %q",
			ErrEnvironmentMismatch, id, ident.GetEnvironment(), role.GetName(), role.GetEnvironment())
	}
	return ident, nil
}

// sourceAllowed reports whether src falls in one of cidrs. An unknown
// source, and entries that do not parse, match nothing.
func sourceAllowed(cidrs []string, src netip.Addr) bool {
	if !src.IsValid() {
		return false
	}
	src = src.Unmap().WithZone("")
	for _, c := range cidrs {
		if pfx, err := netip.ParsePrefix(c); err == nil {
			if pfx.Contains(src) {
				return true
			}
			continue
		}
		if a, err := netip.ParseAddr(c); err == nil && a.Unmap() == src {
			return true
		}
	}
	return false
}

// NewSecretID draws a secret id and its accessor. The secret (32 random
// bytes, unpadded base64url) goes to the caller once and is stored only as
// HashSecretID; the accessor (16 random bytes, hex) names it in the state,
// in audit records and in revocation.
func NewSecretID(rand io.Reader) (secret, accessor string, err error) {
	var b [48]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", "", fmt.Errorf("authn: reading randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:32]), hex.EncodeToString(b[32:]), nil
}

// HashSecretID is HMAC-SHA256(hmacKey, secret): the only form in which a
// secret id is stored or replicated, and the key it is looked up by.
func HashSecretID(hmacKey []byte, secret string) []byte {
	m := hmac.New(sha256.New, hmacKey)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// NewRoleID draws a random role id, formatted as a UUID (version 4). Role
// ids are identifiers, not secrets.
func NewRoleID(rand io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("authn: reading randomness: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}
