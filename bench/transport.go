package bench

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
)

// Protocol is how the load generator talks to Writ and to the ping ceiling.
type Protocol string

// The protocols `writ bench --protocol` accepts.
const (
	ProtoConnect    Protocol = "connect"     // Connect, binary protobuf, HTTP/1.1
	ProtoConnectH2C Protocol = "connect-h2c" // Connect, binary protobuf, HTTP/2 without TLS
	ProtoGRPC       Protocol = "grpc"        // gRPC over h2c
)

// ParseProtocol checks a --protocol value.
func ParseProtocol(s string) (Protocol, error) {
	switch p := Protocol(s); p {
	case ProtoConnect, ProtoConnectH2C, ProtoGRPC:
		return p, nil
	}
	return "", fmt.Errorf("%w: protocol %q: want connect, connect-h2c or grpc", ErrConfig, s)
}

func (p Protocol) clientOptions() []connect.ClientOption {
	if p == ProtoGRPC {
		return []connect.ClientOption{connect.WithGRPC()}
	}
	return nil
}

// httpClient returns a client for p sized for conns concurrent callers: with
// HTTP/1.1 every caller holds its own keep-alive connection (the default pool
// of two would make the benchmark measure connection setup).
func (p Protocol) httpClient(conns int) *http.Client {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: conns + 8,
		IdleConnTimeout:     90 * time.Second,
	}
	if p != ProtoConnect {
		var ps http.Protocols
		ps.SetUnencryptedHTTP2(true)
		t.Protocols = &ps
	}
	return &http.Client{Transport: t}
}
