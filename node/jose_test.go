package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/writ-dev/writ/internal/clock"
	"github.com/writ-dev/writ/node/nodetest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func fetchJWKS(t *testing.T, c *nodetest.Cluster, i int) []byte {
	t.Helper()
	resp, err := http.Get("http://" + c.Members[i].APIAddr + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks: %d %v", resp.StatusCode, err)
	}
	return b
}

// jwxVerify checks a credential the way a downstream service using
// lestrrat-go/jwx would, offline, from the JWKS alone.
func jwxVerify(jwks []byte, cred string, now time.Time, validate bool) (jwt.Token, error) {
	set, err := jwk.Parse(jwks)
	if err != nil {
		return nil, err
	}
	return jwt.ParseString(cred, jwt.WithKeySet(set), jwt.WithValidate(validate),
		jwt.WithIssuer("writ"), jwt.WithAudience("writ"), jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })))
}

// TestCredentialsVerifyOfflineWithStandardJOSE: two independent JOSE
// libraries (go-jose and lestrrat-go/jwx) verify Writ credentials from the
// served JWKS alone, with every claim a downstream service relies on; after
// a rotation the JWKS serves the current and the previous key and both
// generations verify; once the overlap has passed the leader retires the old
// key and its credentials stop verifying, offline and in Writ.
func TestCredentialsVerifyOfflineWithStandardJOSE(t *testing.T) {
	fc := clock.NewFake(time.Now())
	c := nodetest.New(t, 1, nodetest.Options{Clock: fc})
	proof := setup(t, c)
	delegationSetup(t, c, proof)
	ctx := context.Background()
	root, err := c.Authz(0, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
	if err != nil {
		t.Fatal(err)
	}
	child := delegate(t, c, 0, root.Msg.GetCredential(), 60)
	jwks := fetchJWKS(t, c, 0)

	for _, tc := range []struct {
		name, cred, parent string
		lease              *writv1.Lease
	}{
		{"root", root.Msg.GetCredential(), "", root.Msg.GetLease()},
		{"child", child.GetCredential(), root.Msg.GetLease().GetId(), child.GetLease()},
	} {
		tok, err := jwxVerify(jwks, tc.cred, fc.Now(), true)
		if err != nil {
			t.Fatalf("%s: jwx: %v", tc.name, err)
		}
		sub, _ := tok.Subject()
		jti, _ := tok.JwtID()
		exp, _ := tok.Expiration()
		iat, _ := tok.IssuedAt()
		var env, parent string
		var scope map[string]any
		_ = tok.Get("environment", &env)
		_ = tok.Get("parent", &parent)
		if err := tok.Get("scope", &scope); err != nil {
			t.Fatalf("%s: scope: %v", tc.name, err)
		}
		if sub != "ci/deploy-api" || jti != tc.lease.GetId() || env != "prod" || parent != tc.parent ||
			!exp.Equal(tc.lease.GetExpiresAt().AsTime().Truncate(time.Second)) || !iat.Equal(tc.lease.GetIssuedAt().AsTime().Truncate(time.Second)) ||
			fmt.Sprint(scope["actions"]) != "[deploy]" {
			t.Fatalf("%s: jwx claims sub=%q jti=%q env=%q parent=%q exp=%v iat=%v scope=%v; lease %v", tc.name, sub, jti, env, parent, exp, iat, scope, tc.lease)
		}

		// go-jose, as a Go service would use it.
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(jwks, &set); err != nil {
			t.Fatal(err)
		}
		parsed, err := josejwt.ParseSigned(tc.cred, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			t.Fatal(err)
		}
		keys := set.Key(parsed.Headers[0].KeyID)
		if len(keys) != 1 {
			t.Fatalf("%s: kid %q not in the JWKS", tc.name, parsed.Headers[0].KeyID)
		}
		var std josejwt.Claims
		if err := parsed.Claims(keys[0].Key, &std); err != nil {
			t.Fatalf("%s: go-jose: %v", tc.name, err)
		}
		if err := std.ValidateWithLeeway(josejwt.Expected{Issuer: "writ", AnyAudience: []string{"writ"}, ID: tc.lease.GetId(), Time: fc.Now()}, 0); err != nil {
			t.Fatalf("%s: go-jose claims: %v", tc.name, err)
		}
	}
	// A forged signature fails offline.
	forged := root.Msg.GetCredential()
	forged = forged[:len(forged)-4] + "AAAA"
	if _, err := jwxVerify(jwks, forged, fc.Now(), true); err == nil {
		t.Fatal("jwx accepted a forged signature")
	}

	// Rotate: the JWKS serves both keys; both generations verify offline.
	rot, err := c.Keys(0).RotateSigningKey(ctx, connect.NewRequest(&writv1.RotateSigningKeyRequest{OverlapSeconds: 3600}))
	if err != nil {
		t.Fatal(err)
	}
	newer, err := c.Authz(0, false).AuthorizeAndIssue(ctx, issueRequest(proof, true))
	if err != nil {
		t.Fatal(err)
	}
	jwks = fetchJWKS(t, c, 0)
	for _, cred := range []string{root.Msg.GetCredential(), newer.Msg.GetCredential()} {
		if _, err := jwxVerify(jwks, cred, fc.Now(), true); err != nil {
			t.Fatalf("after rotation: %v", err)
		}
	}
	if h, _ := josejwt.ParseSigned(newer.Msg.GetCredential(), []jose.SignatureAlgorithm{jose.EdDSA}); h.Headers[0].KeyID != rot.Msg.GetKey().GetKid() {
		t.Fatalf("new credential signed with %q, want the new key %q", h.Headers[0].KeyID, rot.Msg.GetKey().GetKid())
	}
	list, err := c.Keys(0).ListSigningKeys(ctx, connect.NewRequest(&writv1.ListSigningKeysRequest{}))
	if err != nil || len(list.Msg.GetKeys()) != 2 || !list.Msg.GetKeys()[0].GetCurrent() || list.Msg.GetKeys()[1].GetRetireAt() == nil {
		t.Fatalf("keys after rotation: %v %v", list, err)
	}

	// Past the overlap the leader retires the old key.
	fc.Advance(61 * time.Minute)
	nodetest.Eventually(t, 10*time.Second, "old key retired", func() error {
		list, err := c.Keys(0).ListSigningKeys(ctx, connect.NewRequest(&writv1.ListSigningKeysRequest{}))
		if err != nil {
			return err
		}
		if n := len(list.Msg.GetKeys()); n != 1 {
			return fmt.Errorf("%d keys", n)
		}
		return nil
	})
	jwks = fetchJWKS(t, c, 0)
	if _, err := jwxVerify(jwks, root.Msg.GetCredential(), fc.Now(), false); err == nil {
		t.Fatal("a credential of the retired key still verifies offline")
	}
	if _, err := jwxVerify(jwks, newer.Msg.GetCredential(), fc.Now(), false); err != nil {
		t.Fatalf("the current key's credential: %v", err)
	}
	v, err := c.Authz(0, false).Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: root.Msg.GetCredential()}))
	if err != nil || v.Msg.GetActive() || !slices.Contains([]string{"unknown_signing_key", "expired"}, v.Msg.GetReason()) {
		t.Fatalf("writ verify of a retired key's credential: %v %v", v, err)
	}
}
