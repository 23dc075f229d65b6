package credential

import "errors"

// Verification failures. Verify wraps one of these with %w and some detail;
// callers tell them apart with errors.Is. The detail comes from parsing
// untrusted input: log it, but send clients only a reason derived from the
// sentinel.
var (
	// ErrMalformed: not a compact JWS, bad base64 or JSON, an algorithm
	// other than EdDSA (including "none" and HMAC), a missing kid or exp,
	// or a token longer than MaxTokenSize.
	ErrMalformed = errors.New("credential: malformed token")
	// ErrUnknownKey: the kid names no signing key in the key source.
	ErrUnknownKey = errors.New("credential: unknown signing key")
	// ErrBadSignature: the signature does not verify under the named key.
	ErrBadSignature = errors.New("credential: bad signature")
	// ErrExpired: now is at or after exp (plus leeway).
	ErrExpired = errors.New("credential: expired")
	// ErrNotYetValid: now is before nbf or iat (minus leeway).
	ErrNotYetValid = errors.New("credential: not yet valid")
)

// ErrInvalidKey is returned by NewSigner, Mint and PublicJWKS for a signing
// key record that is not usable: no kid, or a seed that is not 32 bytes.
var ErrInvalidKey = errors.New("credential: invalid signing key")

// ErrInvalidClaims is returned by Mint for claims Writ never issues: no
// subject, no id, or no expiry.
var ErrInvalidClaims = errors.New("credential: invalid claims")
