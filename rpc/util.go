package rpc

import (
	"net"
	"net/netip"

	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func splitHostPort(s string) (string, string, error) { return net.SplitHostPort(s) }

func marshalResult(r *fsmpb.Result) ([]byte, error) { return proto.Marshal(r) }
