package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

const defaultAddr = "http://127.0.0.1:7400"

// Environment variables the client reads when the matching flag is not set.
const (
	envAddr       = "WRIT_ADDR"
	envToken      = "WRIT_TOKEN"
	envSecretID   = "WRIT_SECRET_ID"
	envCredential = "WRIT_CREDENTIAL"
	envAdminToken = "WRIT_ADMIN_TOKEN"
	envCACert     = "WRIT_CACERT"
	envClientCert = "WRIT_CLIENT_CERT"
	envClientKey  = "WRIT_CLIENT_KEY"
	envJWT        = "WRIT_JWT"
)

// clientTLS builds the client's TLS settings: caFile (PEM) verifies the
// server instead of the system roots; certFile and keyFile are presented
// for mTLS logins. It returns nil when none is set.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca cert %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("a client certificate needs both --client-cert and --client-key")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// normalizeAddr turns what a user types for --addr into a base URL:
// "127.0.0.1:7400" and "localhost" get http://, a trailing slash goes, a path
// prefix (for a reverse proxy) stays.
func normalizeAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("address is empty")
	}
	raw := s
	if !strings.Contains(s, "://") {
		if strings.HasPrefix(s, ":") {
			// ":7400" means this host, as with net.Listen.
			s = "127.0.0.1" + s
		}
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("address %q: %v", raw, unwrapURLError(err))
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return "", fmt.Errorf("address %q: scheme %q is not supported; use http:// or https://", raw, u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("address %q has no host", raw)
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return "", fmt.Errorf("address %q: bad port %q", raw, p)
		}
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("address %q: want scheme://host:port[/path], without user, query or fragment", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// protocol is the --protocol flag.
type protocol string

const (
	protoConnect protocol = "connect"
	protoGRPC    protocol = "grpc"
	protoGRPCWeb protocol = "grpcweb"
)

func parseProtocol(s string) (protocol, error) {
	switch p := protocol(strings.ToLower(strings.TrimSpace(s))); p {
	case protoConnect, protoGRPC, protoGRPCWeb:
		return p, nil
	case "grpc-web":
		return protoGRPCWeb, nil
	}
	return "", fmt.Errorf("unknown protocol %q: want connect, grpc or grpcweb", s)
}

// clientOptions are the connect options for one protocol.
func (p protocol) clientOptions() []connect.ClientOption {
	switch p {
	case protoGRPC:
		return []connect.ClientOption{connect.WithGRPC()}
	case protoGRPCWeb:
		return []connect.ClientOption{connect.WithGRPCWeb()}
	}
	return nil
}

// newHTTPClient returns a client able to speak p to baseURL. gRPC needs
// HTTP/2; over plain http that means h2c (prior knowledge), which net/http
// speaks when asked through Protocols. tlsCfg (may be nil) sets the CA that
// verifies the server and the client certificate for https.
func newHTTPClient(p protocol, baseURL string, tlsCfg *tls.Config) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if tlsCfg != nil {
		t.TLSClientConfig = tlsCfg
	}
	if p == protoGRPC && strings.HasPrefix(baseURL, "http://") {
		var ps http.Protocols
		ps.SetUnencryptedHTTP2(true)
		t.Protocols = &ps
	}
	return &http.Client{Transport: t}
}

// bearerInterceptor sends the token on every call, unary or streaming.
type bearerInterceptor struct{ token, userAgent string }

func (b bearerInterceptor) set(h http.Header) {
	if b.token != "" {
		h.Set("Authorization", "Bearer "+b.token)
	}
	if b.userAgent != "" {
		h.Set("User-Agent", b.userAgent)
	}
}

func (b bearerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		b.set(req.Header())
		return next(ctx, req)
	}
}

func (b bearerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		b.set(conn.RequestHeader())
		return conn
	}
}

func (b bearerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// clients are the service clients for one base URL.
type clients struct {
	baseURL     string
	admin       writv1connect.AdminServiceClient
	authz       writv1connect.AuthzServiceClient
	cluster     writv1connect.ClusterServiceClient
	policy      writv1connect.PolicyServiceClient
	authConfigs writv1connect.AuthConfigServiceClient
	lease       writv1connect.LeaseServiceClient
	key         writv1connect.KeyServiceClient
}

// clientConfig is everything needed to build clients.
type clientConfig struct {
	BaseURL  string
	Token    string
	Protocol protocol
	// HTTPClient overrides the client newHTTPClient would build.
	HTTPClient *http.Client
	// TLS verifies an https server and presents a client certificate.
	TLS *tls.Config
}

func newClients(cfg clientConfig) *clients {
	hc := cfg.HTTPClient
	if hc == nil {
		hc = newHTTPClient(cfg.Protocol, cfg.BaseURL, cfg.TLS)
	}
	opts := append(cfg.Protocol.clientOptions(),
		connect.WithInterceptors(bearerInterceptor{token: cfg.Token, userAgent: "writ-cli/" + version}))
	return &clients{
		baseURL: cfg.BaseURL,
		admin:   writv1connect.NewAdminServiceClient(hc, cfg.BaseURL, opts...),
		authz:   writv1connect.NewAuthzServiceClient(hc, cfg.BaseURL, opts...),
		cluster: writv1connect.NewClusterServiceClient(hc, cfg.BaseURL, opts...),
		policy:  writv1connect.NewPolicyServiceClient(hc, cfg.BaseURL, opts...),

		authConfigs: writv1connect.NewAuthConfigServiceClient(hc, cfg.BaseURL, opts...),
		lease:       writv1connect.NewLeaseServiceClient(hc, cfg.BaseURL, opts...),
		key:         writv1connect.NewKeyServiceClient(hc, cfg.BaseURL, opts...),
	}
}

// callTimeout bounds one command's calls; zero or negative means none.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
