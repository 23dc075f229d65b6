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
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/internal/telemetry"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// Header names used between nodes.
const (
	// NodeTokenHeader authenticates node-to-node calls (NodeService).
	NodeTokenHeader = "Writ-Node-Token"
)

// MaxRequestBytes bounds every request body, except those of the services
// that carry policy text (MaxPolicyRequestBytes).
const MaxRequestBytes = 1 << 20

// MaxPolicyRequestBytes bounds the request bodies of AdminService,
// PolicyService and NodeService (forwarded writes, on the cluster port): a policy set may hold
// MaxPolicyBytes of Cedar (10,000 policies are about 1.5 MB).
const MaxPolicyRequestBytes = 9 << 20

// CompressMinBytes: responses smaller than this are sent uncompressed even to
// clients that accept gzip. Compressing a 1–2 KB AuthorizeAndIssue answer
// cost more CPU than the whole Cedar decision (about a tenth of a node's CPU
// under writ bench's issue load); large answers (lists, policy sets) still
// compress.
const CompressMinBytes = 32 << 10

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
	// Schema validates every policy set before it is proposed; default the
	// embedded policies/writ.cedarschema.
	Schema *authz.Schema
	// Policy holds the node-local policy tooling (shadow evaluation and the
	// recent-decision sample diffs replay); default NewPolicyTools with Logger.
	Policy *PolicyTools
	// Authn verifies JWT and mTLS proofs (and caches keys and chains);
	// default authn.New with Logger.
	Authn *authn.Authenticator
	// Environments identities and roles may live in; default prod,
	// staging, dev.
	Environments []string
	// KeyOverlap is how long rotated-out signing keys keep verifying when a
	// rotation names no overlap; default 24h.
	KeyOverlap time.Duration
	// WatchHeartbeat is how often an idle WatchRevocations stream carries
	// the applied index; default 5s.
	WatchHeartbeat time.Duration
	// Audit receives the audit records (nil audits nothing). See
	// audit/DESIGN.md for the one-call-per-event-site pattern.
	Audit Auditor
	// Metrics are the decision, issuance, revocation and login metrics
	// (nil: unregistered ones). Gatherer, when set, is served on /metrics.
	Metrics  *telemetry.Metrics
	Gatherer prometheus.Gatherer
	// Interceptors wrap every service, outermost first (tracing).
	Interceptors []connect.Interceptor
}

// DefaultEnvironments are the environments when none are configured.
var DefaultEnvironments = []string{"prod", "staging", "dev"}

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
	if d.Schema == nil {
		d.Schema = defaultSchema()
	}
	if d.Audit == nil {
		d.Audit = nopAuditor{}
	}
	d.Metrics = metricsOrNew(d.Metrics)
	if d.Policy == nil {
		// Shadow disagreements are counted and audited (issue 6).
		d.Policy = NewPolicyTools(PolicyToolsConfig{Logger: d.Logger, Observer: shadowAuditor{metrics: d.Metrics, audit: d.Audit}})
	}
	if d.Authn == nil {
		d.Authn = authn.New(authn.Config{Logger: d.Logger})
	}
	if len(d.Environments) == 0 {
		d.Environments = DefaultEnvironments
	}
	if d.KeyOverlap <= 0 {
		d.KeyOverlap = 24 * time.Hour
	}
	if d.WatchHeartbeat <= 0 {
		d.WatchHeartbeat = 5 * time.Second
	}
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// NewHandler returns the HTTP handler serving every public Writ service
// (node-to-node services live on the cluster port: NewClusterHandler), gRPC health
// and reflection, /healthz, /readyz and /.well-known/jwks.json.
func NewHandler(d Deps) http.Handler {
	d.defaults()
	opts := connect.WithHandlerOptions(connect.WithReadMaxBytes(MaxRequestBytes), connect.WithCompressMinBytes(CompressMinBytes), connect.WithInterceptors(d.Interceptors...))
	mux := http.NewServeMux()
	mux.Handle(writv1connect.NewAuditServiceHandler(&auditService{d: d}, opts))
	if d.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(d.Gatherer, promhttp.HandlerOpts{}))
	}
	authzSvc := &authzService{d: d}
	mux.Handle(writv1connect.NewAuthzServiceHandler(authzSvc, opts))
	mux.Handle(writv1connect.NewLeaseServiceHandler(&leaseService{a: authzSvc}, opts))
	mux.Handle(writv1connect.NewKeyServiceHandler(&keyService{d: d}, opts, connect.WithInterceptors(adminAuth(d))))
	big := connect.WithHandlerOptions(connect.WithReadMaxBytes(MaxPolicyRequestBytes), connect.WithCompressMinBytes(CompressMinBytes), connect.WithInterceptors(d.Interceptors...))
	mux.Handle(writv1connect.NewAdminServiceHandler(&adminService{d: d}, big,
		connect.WithInterceptors(adminAuth(d))))
	mux.Handle(writv1connect.NewPolicyServiceHandler(&policyService{d: d}, big,
		connect.WithInterceptors(adminAuth(d))))
	mux.Handle(writv1connect.NewAuthConfigServiceHandler(&authConfigService{d: d}, opts,
		connect.WithInterceptors(adminAuth(d))))
	mux.Handle(writv1connect.NewClusterServiceHandler(&clusterService{d: d}, opts,
		connect.WithInterceptors(adminAuthFor(d, writv1connect.ClusterServiceJoinProcedure, writv1connect.ClusterServiceLeaveProcedure))))
	mux.Handle(healthHandler(d))
	reflector := grpcreflect.NewStaticReflector(
		writv1connect.AuthzServiceName,
		writv1connect.AdminServiceName,
		writv1connect.PolicyServiceName,
		writv1connect.AuthConfigServiceName,
		writv1connect.ClusterServiceName,
		writv1connect.LeaseServiceName,
		writv1connect.KeyServiceName,
		writv1connect.AuditServiceName,
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
	return withTLSState(mux)
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
			if !needsAdmin(req.Spec().Procedure, procedures) {
				return next(ctx, req)
			}
			if err := checkAdmin(ctx, d, req.Header()); err != nil {
				d.auditAdminLoginFailure(req.Header(), req.Spec().Procedure, err)
				return nil, toConnect(d.Logger, err)
			}
			// Humans are not machines: admin calls act as a human, and are
			// audited in the human stream under that actor.
			actor := authn.AdminActor(bearer(req.Header()), sourceIP(req.Peer().Addr))
			ctx = authn.WithActor(ctx, actor)
			ci := &callerInfo{actor: d.auditActor(actor, bearer(req.Header())), procedure: req.Spec().Procedure}
			resp, err := next(withCaller(ctx, ci), req)
			if err != nil && !ci.recorded && req.Spec().IdempotencyLevel != connect.IdempotencyNoSideEffects {
				// A change refused before it reached a write (bad input).
				c := d.begin(audit.TypeAdmin, procedureMethod(ci.procedure), false)
				c.ev.Actor, c.ev.AuthMethod = ci.actor, authAdminToken
				c.end(err)
			}
			return resp, err
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
