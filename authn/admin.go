package authn

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
)

// AdminTokenPrefix starts every admin token, so secret scanners and humans
// recognise one.
const AdminTokenPrefix = "writ_admin_"

// maxAdminTokenLen bounds what CheckAdminToken hashes.
const maxAdminTokenLen = 1024

// NewAdminToken draws an admin token: AdminTokenPrefix followed by 32
// random bytes, unpadded base64url.
func NewAdminToken(rand io.Reader) (string, error) {
	var b [32]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("authn: reading randomness: %w", err)
	}
	return AdminTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashAdminToken is the form the admin token is replicated in: SHA-256.
// The token has 256 bits of entropy, so an unkeyed hash is enough.
func HashAdminToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// CheckAdminToken reports whether token is the cluster's admin token,
// comparing hashes in constant time. It fails with ErrNotBootstrapped or
// ErrInvalidAdminToken.
func CheckAdminToken(st State, token string) error {
	if !st.Bootstrapped() {
		return ErrNotBootstrapped
	}
	want := st.AdminTokenSHA256()
	if len(want) != sha256.Size || token == "" || len(token) > maxAdminTokenLen {
		return ErrInvalidAdminToken
	}
	got := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(got[:], want) != 1 {
		return ErrInvalidAdminToken
	}
	return nil
}
