package rpc

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/authn/authntest"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// recordingAuditor keeps every record; Hash is a visible stand-in for the
// keyed hash.
type recordingAuditor struct {
	nopAuditor
	mu  sync.Mutex
	evs []*audit.Event
}

func (r *recordingAuditor) Record(ev *audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func (r *recordingAuditor) RecordBy(ev *audit.Event, _ time.Time) { r.Record(ev) }

func (r *recordingAuditor) Hash(v string) string {
	sum := sha256.Sum256([]byte("k" + v))
	return audit.HashPrefix + hex.EncodeToString(sum[:])
}

// TestLoginFailureRecords: a refused proof of each method leaves one login
// record that names the attempt without its secret: AppRole ids and a JWT
// as keyed hashes, an mTLS certificate by its fingerprint, and the role
// asked for.
func TestLoginFailureRecords(t *testing.T) {
	ca := authntest.NewCA(t, "mesh root")
	cert := ca.Issue(t, authntest.Leaf{SPIFFEID: "spiffe://example.org/ns/prod/sa/agent"})
	fp := sha256.Sum256(cert.Certificate[0])
	const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
	for _, tc := range []struct {
		name    string
		proof   *writv1.Proof
		ctx     func(context.Context) context.Context
		secrets []string
		check   func(ra *recordingAuditor, ev *audit.Event) error
	}{
		{name: "approle", proof: &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: "rid-1", SecretId: "sid-secret"}}},
			secrets: []string{"sid-secret", "rid-1"},
			check: func(ra *recordingAuditor, ev *audit.Event) error {
				if ev.Hashes["secret_id"] != ra.Hash("sid-secret") || ev.Hashes["role_id"] != ra.Hash("rid-1") {
					return fmt.Errorf("hashes %v", ev.Hashes)
				}
				return nil
			}},
		{name: "jwt", proof: &writv1.Proof{Method: &writv1.Proof_Jwt{Jwt: &writv1.JWTProof{Role: "ci", Token: jwt}}},
			secrets: []string{jwt, "c2lnbmF0dXJl"},
			check: func(ra *recordingAuditor, ev *audit.Event) error {
				if ev.Hashes["jwt"] != ra.Hash(jwt) || ev.Actor.Role != "ci" {
					return fmt.Errorf("hashes %v, actor %+v", ev.Hashes, ev.Actor)
				}
				return nil
			}},
		{name: "mtls", proof: &writv1.Proof{Method: &writv1.Proof_Mtls{Mtls: &writv1.MTLSProof{Role: "mesh"}}},
			ctx: func(ctx context.Context) context.Context {
				leaf, err := x509.ParseCertificate(cert.Certificate[0])
				if err != nil {
					t.Fatal(err)
				}
				return context.WithValue(ctx, tlsStateKey{}, &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
			},
			check: func(_ *recordingAuditor, ev *audit.Event) error {
				auth, _ := ev.Context["auth"].(map[string]any)
				if auth["cert_fingerprint"] != hex.EncodeToString(fp[:]) || ev.Actor.Role != "mesh" {
					return fmt.Errorf("context %v, actor %+v", ev.Context, ev.Actor)
				}
				return nil
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra := &recordingAuditor{}
			d := Deps{Audit: ra}
			d.defaults()
			s := &authzService{d: d}
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx(ctx)
			}
			c := d.begin(audit.TypeDecision, "AuthorizeAndIssue", true)
			s.loginFailed(ctx, c, tc.name, tc.proof, errors.New("refused"))
			c.end(errors.New("refused"))
			if len(ra.evs) != 1 || !c.skip {
				t.Fatalf("%d records (skip %v), want the login record only", len(ra.evs), c.skip)
			}
			ev := ra.evs[0]
			if ev.Type != audit.TypeLogin || ev.Decision != audit.Deny || ev.AuthMethod != tc.name {
				t.Errorf("record %+v", ev)
			}
			if err := tc.check(ra, ev); err != nil {
				t.Error(err)
			}
			text := fmt.Sprintf("%+v %v %v", *ev, ev.Hashes, ev.Context)
			for _, sec := range tc.secrets {
				if strings.Contains(text, sec) {
					t.Errorf("record contains %q", sec)
				}
			}
		})
	}
}
