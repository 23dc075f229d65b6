package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/fsm"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

type tlsStateKey struct{}

// withTLSState keeps the request's TLS connection state in its context so
// handlers can read the client certificate the handshake carried (connect's
// Peer has only the address).
func withTLSState(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			r = r.WithContext(context.WithValue(r.Context(), tlsStateKey{}, r.TLS))
		}
		next.ServeHTTP(w, r)
	})
}

// peerCertificates returns the certificates the client presented, leaf first.
func peerCertificates(ctx context.Context) []*x509.Certificate {
	st, _ := ctx.Value(tlsStateKey{}).(*tls.ConnectionState)
	if st == nil {
		return nil
	}
	return st.PeerCertificates
}

// login authenticates a proof on view by its method.
func (s *authzService) login(ctx context.Context, view *fsm.View, proof *writv1.Proof, peer string, now time.Time) (*authn.Principal, string, error) {
	src := peerAddr(peer)
	switch m := proof.GetMethod().(type) {
	case *writv1.Proof_Approle:
		p, err := authn.LoginAppRole(view, authn.AppRoleProof{RoleID: m.Approle.GetRoleId(), SecretID: m.Approle.GetSecretId(), Source: src}, now)
		return p, authn.MethodAppRole, err
	case *writv1.Proof_Jwt:
		p, err := s.d.Authn.LoginJWT(ctx, view, authn.JWTProof{Role: m.Jwt.GetRole(), Token: m.Jwt.GetToken(), Source: src}, now)
		return p, authn.MethodJWT, err
	case *writv1.Proof_Mtls:
		p, err := s.d.Authn.LoginMTLS(view, authn.MTLSProof{Role: m.Mtls.GetRole(), Chain: peerCertificates(ctx), Source: src}, now)
		return p, authn.MethodMTLS, err
	}
	return nil, "", invalidf("a proof is required: approle, jwt or mtls")
}

// evidenceStruct renders evidence for Decision.auth.
func evidenceStruct(ev map[string]any) *structpb.Struct {
	st, err := structpb.NewStruct(ev)
	if err != nil {
		return nil
	}
	return st
}

// sourceIP renders a peer address for an actor ("" when unknown).
func sourceIP(peer string) string {
	if a := peerAddr(peer); a.IsValid() && a != (netip.Addr{}) {
		return a.String()
	}
	return ""
}

// secretRejected explains an IssueLease that Apply refused for its secret
// id: the login, replayed on a view that includes the refusal, names the
// reason (secret_id_used_up, secret_id_expired, ...). fallback is returned
// when it cannot.
func (s *authzService) secretRejected(ctx context.Context, proof *writv1.Proof, peer string, index uint64, fallback error) error {
	view, err := s.d.Backend.Read(ctx, ReadOptions{MinIndex: index})
	if err != nil {
		return fallback
	}
	if _, _, err := s.login(ctx, view, proof, peer, s.d.Clock.Now()); authn.Reason(err) != "" {
		return err
	}
	return fallback
}
