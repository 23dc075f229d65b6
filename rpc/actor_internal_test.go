package rpc

import (
	"bytes"
	"context"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

// viewBackend serves LocalView from a bootstrapped FSM; nothing else is called.
type viewBackend struct {
	Backend
	f *fsm.FSM
}

func (b viewBackend) LocalView() *fsm.View { return b.f.View() }

// TestAdminCallsActAsHumans: the admin interceptor puts a human actor in the
// request context, named by a hash of the token (never the token), and a
// call without a valid token never reaches the handler.
func TestAdminCallsActAsHumans(t *testing.T) {
	const token = "writ_admin_actor-test"
	f := fsm.New(fsm.Config{})
	entry, err := fsm.Encode(&fsmpb.Command{Header: &fsmpb.Header{RequestId: "b"}, Payload: &fsmpb.Command_Bootstrap{Bootstrap: &fsmpb.Bootstrap{
		ClusterId: "c", AdminTokenSha256: authn.HashAdminToken(token), HmacKey: bytes.Repeat([]byte{1}, 32),
		SigningKey: &fsmpb.SigningKey{Kid: "k", Ed25519Seed: bytes.Repeat([]byte{2}, 32)},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.Apply(1, entry); r[0].GetCode() != fsmpb.ResultCode_RESULT_CODE_OK {
		t.Fatal(r[0])
	}
	d := Deps{Backend: viewBackend{f: f}}
	d.defaults()
	var got authn.Actor
	var reached bool
	call := adminAuth(d).WrapUnary(func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
		reached = true
		got, _ = authn.ActorFrom(ctx)
		return connect.NewResponse(&emptypb.Empty{}), nil
	})
	req := connect.NewRequest(&emptypb.Empty{})
	req.Header().Set("Authorization", "Bearer "+token)
	if _, err := call(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if !got.IsHuman() || got.Method != "admin_token" || got.ID != authn.AdminActor(token, "").ID || bytes.Contains([]byte(got.ID), []byte(token)) {
		t.Fatalf("actor %+v", got)
	}

	reached = false
	bad := connect.NewRequest(&emptypb.Empty{})
	bad.Header().Set("Authorization", "Bearer writ_admin_wrong")
	if _, err := call(context.Background(), bad); connect.CodeOf(err) != connect.CodeUnauthenticated || reached {
		t.Fatalf("wrong token: %v, handler reached %v", err, reached)
	}
}
