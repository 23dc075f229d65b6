package rpc

import (
	"context"
	"time"

	"connectrpc.com/connect"

	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// keyService manages the signing keyring; the admin interceptor
// authenticates every call.
type keyService struct{ d Deps }

// RotateSigningKey draws a new key on this node and replicates it in one
// entry that also stamps every older key to retire after the overlap; the
// leader retires them once that time has passed.
func (s *keyService) RotateSigningKey(ctx context.Context, req *connect.Request[writv1.RotateSigningKeyRequest]) (*connect.Response[writv1.RotateSigningKeyResponse], error) {
	resp, err := s.rotate(ctx, req.Msg)
	return resp, toConnect(s.d.Logger, err)
}

func (s *keyService) rotate(ctx context.Context, m *writv1.RotateSigningKeyRequest) (*connect.Response[writv1.RotateSigningKeyResponse], error) {
	if m.GetOverlapSeconds() < 0 {
		return nil, invalidf("overlap_seconds must not be negative")
	}
	overlap := time.Duration(m.GetOverlapSeconds()) * time.Second
	if overlap == 0 {
		overlap = s.d.KeyOverlap
	}
	key, err := credential.NewSigningKey(s.d.Rand, s.d.Clock.Now())
	if err != nil {
		return nil, err
	}
	requestID, err := newID(s.d.Rand, "r_")
	if err != nil {
		return nil, err
	}
	cmd := &fsmpb.Command{
		Header:  &fsmpb.Header{RequestId: requestID},
		Payload: &fsmpb.Command_PutSigningKey{PutSigningKey: &fsmpb.PutSigningKey{Key: key, RetireOthersAfterNanos: int64(overlap)}},
	}
	results, err := s.d.Backend.Propose(ctx, []*fsmpb.Command{cmd}, ProposeOptions{})
	if err != nil {
		return nil, err
	}
	if err := resultError(results[0]); err != nil {
		return nil, err
	}
	view, err := s.d.Backend.Read(ctx, ReadOptions{MinIndex: results[0].GetIndex()})
	if err != nil {
		return nil, err
	}
	stored, _ := view.SigningKey(key.GetKid())
	return connect.NewResponse(&writv1.RotateSigningKeyResponse{Key: keyInfo(stored, true), Index: results[0].GetIndex()}), nil
}

// ListSigningKeys lists the keyring, newest (the one that signs) first.
func (s *keyService) ListSigningKeys(ctx context.Context, req *connect.Request[writv1.ListSigningKeysRequest]) (*connect.Response[writv1.ListSigningKeysResponse], error) {
	view, err := s.d.Backend.Read(ctx, readOptions(req.Msg.GetRead()))
	if err != nil {
		return nil, toConnect(s.d.Logger, err)
	}
	out := &writv1.ListSigningKeysResponse{AppliedIndex: view.Index()}
	for i, k := range view.SigningKeys() {
		out.Keys = append(out.Keys, keyInfo(k, i == 0))
	}
	return connect.NewResponse(out), nil
}

func keyInfo(k *fsmpb.SigningKey, current bool) *writv1.SigningKeyInfo {
	info := &writv1.SigningKeyInfo{Kid: k.GetKid(), CreatedAt: ts(k.GetCreatedUnixNano()), Current: current}
	if k.GetRetireUnixNano() != 0 {
		info.RetireAt = ts(k.GetRetireUnixNano())
	}
	return info
}
