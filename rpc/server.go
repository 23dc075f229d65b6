package rpc

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// Header names used between nodes.
const (
	// NodeTokenHeader authenticates node-to-node calls (NodeService).
	NodeTokenHeader = "Writ-Node-Token"
)

// MaxRequestBytes bounds every request body.
const MaxRequestBytes = 1 << 20

// Deps are what the API server needs. Backend, Engine and Verifier are required.
type Deps struct {
	Backend  Backend
	Engine   *authz.Engine
	Verifier *credential.Verifier
	Logger   *slog.Logger
	Clock    Clock
	Rand     io.Reader
	// Issuer is the credential "iss" claim; default "writ".
	Issuer string
	// Audience is the credential "aud" claim; default "writ".
	Audience string
}

func (d *Deps) defaults() {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Clock == nil {
		d.Clock = realClock{}
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	if d.Issuer == "" {
		d.Issuer = "writ"
	}
	if d.Audience == "" {
		d.Audience = "writ"
	}
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// NewHandler returns the HTTP handler serving every public Writ service
// (node-to-node services live on the cluster port: NewClusterHandler), gRPC health
// and reflection, /healthz, /readyz and /.well-known/jwks.json.
func NewHandler(d Deps) http.Handler {
	d.defaults()
	opts := connect.WithHandlerOptions(connect.WithReadMaxBytes(MaxRequestBytes))
	mux := http.NewServeMux()
	mux.Handle(writv1connect.NewAuthzServiceHandler(&authzService{d: d}, opts))
	mux.Handle(writv1connect.NewAdminServiceHandler(&adminService{d: d}, opts,
		connect.WithInterceptors(adminAuth(d))))
	mux.Handle(writv1connect.NewClusterServiceHandler(&clusterService{d: d}, opts,
		connect.WithInterceptors(adminAuthFor(d, writv1connect.ClusterServiceJoinProcedure, writv1connect.ClusterServiceLeaveProcedure))))
	mux.Handle(healthHandler(d))
	reflector := grpcreflect.NewStaticReflector(
		writv1connect.AuthzServiceName,
		writv1connect.AdminServiceName,
		writv1connect.ClusterServiceName,
		grpc_health_v1.Health_ServiceDesc.ServiceName,
	)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if err := d.Backend.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, err.Error()+"\n")
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		view, err := d.Backend.Read(r.Context(), ReadOptions{})
		if err != nil {
			http.Error(w, "unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		body, err := credential.PublicJWKS(view.SigningKeys())
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = w.Write(body)
	})
	return mux
}

// bearer extracts the bearer token from an Authorization header.
func bearer(h http.Header) string {
	v := h.Get("Authorization")
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

// checkAdmin authenticates a human admin by bearer token against the
// replicated admin token hash.
func checkAdmin(ctx context.Context, d Deps, h http.Header) error {
	tok := bearer(h)
	if tok == "" {
		return withReason(connect.CodeUnauthenticated, "missing_admin_token", "admin token required (Authorization: Bearer <token>)")
	}
	view := d.Backend.LocalView()
	if !view.Bootstrapped() {
		return ErrNotBootstrapped
	}
	if err := authn.CheckAdminToken(view, tok); err != nil {
		return withReason(connect.CodeUnauthenticated, "invalid_admin_token", "invalid admin token")
	}
	return nil
}

func adminAuth(d Deps) connect.Interceptor {
	return adminAuthFor(d)
}

// adminAuthFor requires an admin token on the named procedures, or on every
// procedure when none are named.
func adminAuthFor(d Deps, procedures ...string) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if needsAdmin(req.Spec().Procedure, procedures) {
				if err := checkAdmin(ctx, d, req.Header()); err != nil {
					return nil, toConnect(d.Logger, err)
				}
			}
			return next(ctx, req)
		}
	})
}

func needsAdmin(procedure string, procedures []string) bool {
	if len(procedures) == 0 {
		return true
	}
	for _, p := range procedures {
		if p == procedure {
			return true
		}
	}
	return false
}

// NodeToken derives the node-to-node token from the cluster HMAC key; every
// node that has applied the bootstrap entry can compute it.
func NodeToken(view *fsm.View) string {
	mac := hmac.New(sha256.New, view.HMACKey())
	mac.Write([]byte("writ node token v1"))
	return hex.EncodeToString(mac.Sum(nil))
}

func nodeAuth(d Deps) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			view := d.Backend.LocalView()
			got := req.Header().Get(NodeTokenHeader)
			if !view.Bootstrapped() || subtle.ConstantTimeCompare([]byte(got), []byte(NodeToken(view))) != 1 {
				return nil, newError(connect.CodeUnauthenticated, "invalid_node_token", "node token required", nil)
			}
			return next(ctx, req)
		}
	})
}
