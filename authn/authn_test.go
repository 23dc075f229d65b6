package authn_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeState is an in-memory authn.State.
type fakeState struct {
	bootstrapped bool
	adminHash    []byte
	hmacKey      []byte
	roles        map[string]*fsmpb.Role // by role id
	secrets      map[string]*fsmpb.SecretID
	identities   map[string]*fsmpb.Identity
}

func (s *fakeState) Bootstrapped() bool       { return s.bootstrapped }
func (s *fakeState) AdminTokenSHA256() []byte { return s.adminHash }
func (s *fakeState) HMACKey() []byte          { return s.hmacKey }
func (s *fakeState) RoleByRoleID(id string) (*fsmpb.Role, bool) {
	r, ok := s.roles[id]
	return r, ok
}
func (s *fakeState) SecretIDByHMAC(h []byte) (*fsmpb.SecretID, bool) {
	sec, ok := s.secrets[string(h)]
	return sec, ok
}
func (s *fakeState) Identity(id string) (*fsmpb.Identity, bool) {
	i, ok := s.identities[id]
	return i, ok
}

func (s *fakeState) addSecret(t testing.TB, secret string, rec *fsmpb.SecretID) {
	t.Helper()
	rec.SecretHmac = authn.HashSecretID(s.hmacKey, secret)
	s.secrets[string(rec.SecretHmac)] = rec
}

const (
	roleID       = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	secret       = "s3cr3t-backup"
	otherRoleID  = "role-id-deploy"
	deploySecret = "s3cr3t-deploy"
)

// newState holds a role "backup" (approle, prod) for identity "backup-job"
// and a role "deploy" with its own secret, plus roles and secrets that
// trip every check.
func newState(t testing.TB) *fakeState {
	t.Helper()
	s := &fakeState{
		bootstrapped: true,
		adminHash:    authn.HashAdminToken("writ_admin_test"),
		hmacKey:      bytes.Repeat([]byte{7}, 32),
		roles:        map[string]*fsmpb.Role{},
		secrets:      map[string]*fsmpb.SecretID{},
		identities:   map[string]*fsmpb.Identity{},
	}
	active := fsmpb.IdentityStatus_IDENTITY_STATUS_ACTIVE
	s.identities["backup-job"] = &fsmpb.Identity{Id: "backup-job", Kind: "ci_job", Owner: "team-storage", Environment: "prod", Status: active}
	s.identities["deployer"] = &fsmpb.Identity{Id: "deployer", Environment: "prod", Status: active}
	s.identities["off"] = &fsmpb.Identity{Id: "off", Environment: "prod", Status: fsmpb.IdentityStatus_IDENTITY_STATUS_DISABLED}
	s.identities["unset"] = &fsmpb.Identity{Id: "unset", Environment: "prod"}
	s.identities["staging-job"] = &fsmpb.Identity{Id: "staging-job", Environment: "staging", Status: active}

	role := func(id, name, ident string, methods ...string) {
		s.roles[id] = &fsmpb.Role{Name: name, RoleId: id, Environment: "prod", Identity: ident, AuthMethods: methods}
	}
	role(roleID, "backup", "backup-job", authn.MethodJWT, authn.MethodAppRole)
	role(otherRoleID, "deploy", "deployer", authn.MethodAppRole)
	role("rid-jwt-only", "jwt-only", "backup-job", authn.MethodJWT)
	role("rid-no-methods", "no-methods", "backup-job")
	role("rid-ghost", "ghost", "nobody", authn.MethodAppRole)
	role("rid-no-identity", "no-identity", "", authn.MethodAppRole)
	role("rid-off", "off", "off", authn.MethodAppRole)
	role("rid-unset", "unset", "unset", authn.MethodAppRole)
	role("rid-staging", "staging-role", "staging-job", authn.MethodAppRole)

	s.addSecret(t, secret, &fsmpb.SecretID{Accessor: "acc-backup", Role: "backup"})
	s.addSecret(t, deploySecret, &fsmpb.SecretID{Accessor: "acc-deploy", Role: "deploy"})
	s.addSecret(t, "sec-expired", &fsmpb.SecretID{Accessor: "acc-expired", Role: "backup", ExpiresUnixNano: t0.UnixNano()})
	s.addSecret(t, "expires-later", &fsmpb.SecretID{Accessor: "acc-later", Role: "backup", ExpiresUnixNano: t0.Add(time.Nanosecond).UnixNano()})
	s.addSecret(t, "used-up", &fsmpb.SecretID{Accessor: "acc-used", Role: "backup", NumUses: 3, Uses: 3})
	s.addSecret(t, "one-left", &fsmpb.SecretID{Accessor: "acc-one-left", Role: "backup", NumUses: 3, Uses: 2})
	s.addSecret(t, "cidr", &fsmpb.SecretID{Accessor: "acc-cidr", Role: "backup", Cidrs: []string{"10.1.0.0/16", "2001:db8::/32", "192.0.2.7"}})
	s.addSecret(t, "bad-cidr", &fsmpb.SecretID{Accessor: "acc-bad-cidr", Role: "backup", Cidrs: []string{"not-a-cidr"}})
	for _, r := range []string{"jwt-only", "no-methods", "ghost", "no-identity", "off", "unset", "staging-role"} {
		s.addSecret(t, "secret-"+r, &fsmpb.SecretID{Accessor: "acc-" + r, Role: r})
	}
	return s
}

func TestLoginAppRole(t *testing.T) {
	t.Parallel()
	st := newState(t)
	addr := netip.MustParseAddr
	tests := []struct {
		name       string
		state      func(*fakeState)
		proof      authn.AppRoleProof
		want       error
		permission bool
		accessor   string
	}{
		{name: "ok", proof: authn.AppRoleProof{RoleID: roleID, SecretID: secret, Source: addr("10.1.2.3")}, accessor: "acc-backup"},
		{name: "ok without source", proof: authn.AppRoleProof{RoleID: roleID, SecretID: secret}, accessor: "acc-backup"},
		{name: "ok before expiry", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "expires-later"}, accessor: "acc-later"},
		{name: "ok with one use left", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "one-left"}, accessor: "acc-one-left"},
		{name: "ok in cidr v4", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "cidr", Source: addr("10.1.200.1")}, accessor: "acc-cidr"},
		{name: "ok in cidr v4-mapped", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "cidr", Source: addr("::ffff:10.1.0.9")}, accessor: "acc-cidr"},
		{name: "ok in cidr v6", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "cidr", Source: addr("2001:db8::1")}, accessor: "acc-cidr"},
		{name: "ok bare address", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "cidr", Source: addr("192.0.2.7")}, accessor: "acc-cidr"},

		{name: "not bootstrapped", state: func(s *fakeState) { s.bootstrapped = false }, proof: authn.AppRoleProof{RoleID: roleID, SecretID: secret}, want: authn.ErrNotBootstrapped},
		{name: "no hmac key", state: func(s *fakeState) { s.hmacKey = nil }, proof: authn.AppRoleProof{RoleID: roleID, SecretID: secret}, want: authn.ErrNotBootstrapped},
		{name: "unknown role id", proof: authn.AppRoleProof{RoleID: "nope", SecretID: secret}, want: authn.ErrUnknownRoleID},
		{name: "empty role id", proof: authn.AppRoleProof{SecretID: secret}, want: authn.ErrUnknownRoleID},
		{name: "huge role id", proof: authn.AppRoleProof{RoleID: strings.Repeat("r", 10000), SecretID: secret}, want: authn.ErrUnknownRoleID},
		{name: "method not allowed", proof: authn.AppRoleProof{RoleID: "rid-jwt-only", SecretID: "secret-jwt-only"}, want: authn.ErrMethodNotAllowed, permission: true},
		{name: "role with no methods", proof: authn.AppRoleProof{RoleID: "rid-no-methods", SecretID: "secret-no-methods"}, want: authn.ErrMethodNotAllowed, permission: true},
		{name: "unknown secret id", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "guess"}, want: authn.ErrInvalidSecretID},
		{name: "wrong secret id", proof: authn.AppRoleProof{RoleID: roleID, SecretID: secret + "x"}, want: authn.ErrInvalidSecretID},
		{name: "empty secret id", proof: authn.AppRoleProof{RoleID: roleID}, want: authn.ErrInvalidSecretID},
		{name: "huge secret id", proof: authn.AppRoleProof{RoleID: roleID, SecretID: strings.Repeat("s", 10000)}, want: authn.ErrInvalidSecretID},
		{name: "stored hash differs from lookup key", state: func(s *fakeState) {
			h := authn.HashSecretID(s.hmacKey, secret)
			rec := proto.Clone(s.secrets[string(h)]).(*fsmpb.SecretID)
			rec.SecretHmac = bytes.Repeat([]byte{0}, 32)
			s.secrets[string(h)] = rec
		}, proof: authn.AppRoleProof{RoleID: roleID, SecretID: secret}, want: authn.ErrInvalidSecretID},
		{name: "secret of another role", proof: authn.AppRoleProof{RoleID: roleID, SecretID: deploySecret}, want: authn.ErrSecretRole},
		{name: "secret expired at expiry", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "sec-expired"}, want: authn.ErrSecretExpired},
		{name: "secret used up", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "used-up"}, want: authn.ErrSecretUsedUp},
		{name: "source outside cidrs", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "cidr", Source: addr("10.2.0.1")}, want: authn.ErrCIDRMismatch},
		{name: "unknown source with cidrs", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "cidr"}, want: authn.ErrCIDRMismatch},
		{name: "unparseable cidr matches nothing", proof: authn.AppRoleProof{RoleID: roleID, SecretID: "bad-cidr", Source: addr("10.1.2.3")}, want: authn.ErrCIDRMismatch},
		{name: "identity missing", proof: authn.AppRoleProof{RoleID: "rid-ghost", SecretID: "secret-ghost"}, want: authn.ErrIdentityNotFound, permission: true},
		{name: "role names no identity", proof: authn.AppRoleProof{RoleID: "rid-no-identity", SecretID: "secret-no-identity"}, want: authn.ErrIdentityNotFound, permission: true},
		{name: "identity disabled", proof: authn.AppRoleProof{RoleID: "rid-off", SecretID: "secret-off"}, want: authn.ErrIdentityDisabled, permission: true},
		{name: "identity status unset", proof: authn.AppRoleProof{RoleID: "rid-unset", SecretID: "secret-unset"}, want: authn.ErrIdentityDisabled, permission: true},
		{name: "environment mismatch", proof: authn.AppRoleProof{RoleID: "rid-staging", SecretID: "secret-staging-role"}, want: authn.ErrEnvironmentMismatch, permission: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := st
			if tt.state != nil {
				s = newState(t)
				tt.state(s)
			}
			p, err := authn.LoginAppRole(s, tt.proof, t0)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("error = %v, want %v", err, tt.want)
				}
				if p != nil {
					t.Errorf("principal with error: %+v", p)
				}
				if got, want := authn.Reason(err), tt.want.(*authn.Error).Reason; got != want {
					t.Errorf("Reason = %q, want %q", got, want)
				}
				if authn.IsPermission(err) != tt.permission {
					t.Errorf("IsPermission = %v, want %v", authn.IsPermission(err), tt.permission)
				}
				if strings.Contains(err.Error(), tt.proof.SecretID) && tt.proof.SecretID != "" {
					t.Errorf("error %q echoes the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Method != authn.MethodAppRole || p.SecretAccessor != tt.accessor {
				t.Errorf("method %q accessor %q, want %q", p.Method, p.SecretAccessor, tt.accessor)
			}
			if diff := cmp.Diff(s.identities["backup-job"], p.Identity, protocmp.Transform()); diff != "" {
				t.Errorf("identity (-want +got):\n%s", diff)
			}
			if p.Role.GetName() != "backup" {
				t.Errorf("role %q", p.Role.GetName())
			}
			want := map[string]any{"method": "approle", "role": "backup", "secret_accessor": tt.accessor}
			if tt.proof.Source.IsValid() {
				want["source_ip"] = tt.proof.Source.Unmap().String()
			}
			if diff := cmp.Diff(want, p.Evidence); diff != "" {
				t.Errorf("evidence (-want +got):\n%s", diff)
			}
			for k, v := range p.Evidence {
				if v == tt.proof.SecretID {
					t.Errorf("evidence %q carries the secret", k)
				}
			}
		})
	}
}

// TestUnknownAndWrongSecretIndistinguishable: a caller cannot tell a secret
// id that exists for another role's hash space, a near miss, and garbage apart.
func TestUnknownAndWrongSecretIndistinguishable(t *testing.T) {
	t.Parallel()
	st := newState(t)
	var msgs []string
	for _, s := range []string{"garbage", secret[:len(secret)-1], secret + "\x00", strings.ToUpper(secret)} {
		_, err := authn.LoginAppRole(st, authn.AppRoleProof{RoleID: roleID, SecretID: s}, t0)
		if !errors.Is(err, authn.ErrInvalidSecretID) {
			t.Fatalf("%q: %v", s, err)
		}
		msgs = append(msgs, err.Error())
	}
	for _, m := range msgs[1:] {
		if m != msgs[0] {
			t.Errorf("messages differ: %q vs %q", m, msgs[0])
		}
	}
}

func TestSecretIDs(t *testing.T) {
	t.Parallel()
	rnd := bytes.NewReader(bytes.Repeat([]byte{0xab}, 48))
	sec, acc, err := authn.NewSecretID(rnd)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(sec) {
		t.Errorf("secret %q is not 32 bytes of base64url", sec)
	}
	if acc != strings.Repeat("ab", 16) {
		t.Errorf("accessor %q", acc)
	}
	if _, _, err := authn.NewSecretID(bytes.NewReader(make([]byte, 47))); err == nil {
		t.Error("short randomness: no error")
	}

	k1, k2 := []byte("key-one"), []byte("key-two")
	h := authn.HashSecretID(k1, sec)
	if len(h) != sha256.Size {
		t.Fatalf("hash is %d bytes", len(h))
	}
	if !bytes.Equal(h, authn.HashSecretID(k1, sec)) {
		t.Error("hash is not deterministic")
	}
	if bytes.Equal(h, authn.HashSecretID(k2, sec)) {
		t.Error("hash ignores the key")
	}
	if sum := sha256.Sum256([]byte(sec)); bytes.Equal(h, sum[:]) {
		t.Error("hash is unkeyed")
	}
}

func TestNewRoleID(t *testing.T) {
	t.Parallel()
	id, err := authn.NewRoleID(bytes.NewReader(bytes.Repeat([]byte{0xff}, 16)))
	if err != nil {
		t.Fatal(err)
	}
	if id != "ffffffff-ffff-4fff-bfff-ffffffffffff" {
		t.Errorf("role id %q", id)
	}
	if _, err := authn.NewRoleID(bytes.NewReader(nil)); err == nil {
		t.Error("no randomness: no error")
	}
}

func TestAdminToken(t *testing.T) {
	t.Parallel()
	tok, err := authn.NewAdminToken(bytes.NewReader(bytes.Repeat([]byte{1}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^writ_admin_[A-Za-z0-9_-]{43}$`).MatchString(tok) {
		t.Fatalf("admin token %q", tok)
	}
	if _, err := authn.NewAdminToken(bytes.NewReader(nil)); err == nil {
		t.Error("no randomness: no error")
	}
	sum := sha256.Sum256([]byte(tok))
	if !bytes.Equal(authn.HashAdminToken(tok), sum[:]) {
		t.Error("HashAdminToken is not SHA-256")
	}

	st := newState(t)
	st.adminHash = authn.HashAdminToken(tok)
	tests := []struct {
		name  string
		state func(*fakeState)
		token string
		want  error
	}{
		{name: "ok", token: tok},
		{name: "wrong", token: tok[:len(tok)-1] + "x", want: authn.ErrInvalidAdminToken},
		{name: "empty", token: "", want: authn.ErrInvalidAdminToken},
		{name: "huge", token: strings.Repeat("x", 5000), want: authn.ErrInvalidAdminToken},
		{name: "not bootstrapped", state: func(s *fakeState) { s.bootstrapped = false }, token: tok, want: authn.ErrNotBootstrapped},
		{name: "no hash stored", state: func(s *fakeState) { s.adminHash = nil }, token: tok, want: authn.ErrInvalidAdminToken},
		// An empty stored hash must not match an empty token's... anything.
		{name: "no hash, empty token", state: func(s *fakeState) { s.adminHash = nil }, token: "", want: authn.ErrInvalidAdminToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := *st
			if tt.state != nil {
				tt.state(&s)
			}
			err := authn.CheckAdminToken(&s, tt.token)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestErrorHelpers(t *testing.T) {
	t.Parallel()
	wrapped := fmt.Errorf("rpc: login: %w", fmt.Errorf("%w: role %q", authn.ErrIdentityDisabled, "x"))
	if authn.Reason(wrapped) != "identity_disabled" || !authn.IsPermission(wrapped) {
		t.Errorf("Reason/IsPermission through wrapping: %q %v", authn.Reason(wrapped), authn.IsPermission(wrapped))
	}
	if authn.Reason(errors.New("other")) != "" || authn.IsPermission(errors.New("other")) || authn.Reason(nil) != "" {
		t.Error("non-authn errors have a reason")
	}
	for _, m := range []string{authn.MethodAppRole, authn.MethodJWT, authn.MethodMTLS} {
		if !authn.KnownMethod(m) {
			t.Errorf("KnownMethod(%q) = false", m)
		}
	}
	if authn.KnownMethod("password") {
		t.Error("KnownMethod(password) = true")
	}
}

func BenchmarkLoginAppRole(b *testing.B) {
	st := newState(b)
	// A populated state: many roles and secrets, as in a real cluster.
	for i := range 10000 {
		st.addSecret(b, fmt.Sprintf("filler-%d", i), &fsmpb.SecretID{Accessor: fmt.Sprintf("acc-%d", i), Role: "backup"})
	}
	proof := authn.AppRoleProof{RoleID: roleID, SecretID: "cidr", Source: netip.MustParseAddr("10.1.2.3")}
	b.ReportAllocs()
	for b.Loop() {
		p, err := authn.LoginAppRole(st, proof, t0)
		if err != nil || p.SecretAccessor != "acc-cidr" {
			b.Fatal(err)
		}
	}
}

func TestActors(t *testing.T) {
	t.Parallel()
	if _, ok := authn.ActorFrom(context.Background()); ok {
		t.Fatal("actor in an empty context")
	}
	h := authn.AdminActor("writ_admin_x", "10.0.0.1")
	ctx := authn.WithActor(context.Background(), h)
	got, ok := authn.ActorFrom(ctx)
	if !ok || !got.IsHuman() || got.Method != "admin_token" || got.SourceIP != "10.0.0.1" || !strings.HasPrefix(got.ID, "admin:") || len(got.ID) != len("admin:")+16 {
		t.Fatalf("admin actor %+v", got)
	}
	if authn.AdminActor("writ_admin_y", "").ID == h.ID {
		t.Error("two tokens, one actor id")
	}
	m := authn.MachineActor(&authn.Principal{
		Identity: &fsmpb.Identity{Id: "ci/a"}, Role: &fsmpb.Role{Name: "ci"}, Method: authn.MethodJWT,
		Evidence: map[string]any{authn.EvidenceSourceIP: "10.0.0.2"},
	})
	if m.IsHuman() || m.Kind != authn.ActorMachine || m.ID != "ci/a" || m.Role != "ci" || m.Method != "jwt" || m.SourceIP != "10.0.0.2" {
		t.Fatalf("machine actor %+v", m)
	}
	if got, _ := authn.ActorFrom(authn.WithActor(ctx, m)); got.IsHuman() {
		t.Error("a later WithActor does not replace the actor")
	}
}
