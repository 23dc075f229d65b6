package rpc

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// TestToConnectCodes: the node's own conditions reach callers with their
// Connect code and reason, also when wrapped.
func TestToConnectCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		code   connect.Code
		reason string
	}{
		{ErrOverloaded, connect.CodeResourceExhausted, "overloaded"},
		{ErrNoLeader, connect.CodeUnavailable, "no_leader"},
		{ErrStale, connect.CodeUnavailable, "stale"},
		{fmt.Errorf("%w: this write needs FSM version 3 and the oldest server runs 2", ErrFSMVersion), connect.CodeFailedPrecondition, "fsm_version"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			t.Parallel()
			var ce *connect.Error
			if !errors.As(toConnect(slog.New(slog.DiscardHandler), tc.err), &ce) {
				t.Fatalf("%v: not a connect error", tc.err)
			}
			reason := ""
			for _, d := range ce.Details() {
				if v, err := d.Value(); err == nil {
					if info, ok := v.(*errdetails.ErrorInfo); ok {
						reason = info.GetReason()
					}
				}
			}
			if ce.Code() != tc.code || reason != tc.reason {
				t.Errorf("%v: %v %q, want %v %q", tc.err, ce.Code(), reason, tc.code, tc.reason)
			}
		})
	}
}
