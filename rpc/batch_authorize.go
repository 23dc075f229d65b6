package rpc

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/writ-dev/writ/fsm"
	"github.com/writ-dev/writ/fsm/fsmpb"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// MaxBatchAuthorizeItems bounds one BatchAuthorize call. 1,000 decisions take
// a few milliseconds of one core; a bigger batch would hold a handler (and its
// read view) long enough to hurt the tail of everything else.
const MaxBatchAuthorizeItems = 1000

// BatchAuthorize answers many Authorize questions in one call, all on one
// read view. Each distinct credential is verified and its lease checked once;
// an item that cannot be decided gets an ItemError and the rest of the batch
// goes on. Only request-wide problems (no items, too many, stale node) fail
// the call.
func (s *authzService) BatchAuthorize(ctx context.Context, req *connect.Request[writv1.BatchAuthorizeRequest]) (*connect.Response[writv1.BatchAuthorizeResponse], error) {
	resp, err := s.batchAuthorize(ctx, req.Msg)
	return resp, toConnect(s.d.Logger, err)
}

// checked is one credential's verification outcome within a batch.
type checked struct {
	lease *fsmpb.Lease
	err   error
}

func (s *authzService) batchAuthorize(ctx context.Context, m *writv1.BatchAuthorizeRequest) (*connect.Response[writv1.BatchAuthorizeResponse], error) {
	items := m.GetItems()
	switch {
	case len(items) == 0:
		return nil, invalidf("items: at least one is required")
	case len(items) > MaxBatchAuthorizeItems:
		return nil, invalidf("items: %d exceeds the limit of %d per call", len(items), MaxBatchAuthorizeItems)
	}
	view, err := s.d.Backend.Read(ctx, readOptions(m.GetRead()))
	if err != nil {
		return nil, err
	}
	now := s.d.Clock.Now()
	// Most batches carry one credential: verify it once, not per item.
	var shared *checked
	var others map[string]*checked
	lookup := func(token string) *checked {
		if token == "" || token == m.GetCredential() {
			if shared == nil {
				l, err := s.checkCredential(view, m.GetCredential(), now)
				shared = &checked{lease: l, err: err}
			}
			return shared
		}
		if c, ok := others[token]; ok {
			return c
		}
		if others == nil {
			others = make(map[string]*checked)
		}
		l, err := s.checkCredential(view, token, now)
		c := &checked{lease: l, err: err}
		others[token] = c
		return c
	}
	out := &writv1.BatchAuthorizeResponse{AppliedIndex: view.Index(), Results: make([]*writv1.BatchAuthorizeResult, len(items))}
	for i, it := range items {
		r := &writv1.BatchAuthorizeResult{}
		out.Results[i] = r
		dec, leaseID, err := s.batchItem(view, it, lookup)
		if err != nil {
			r.Error = s.itemError(err)
			continue
		}
		r.Decision, r.LeaseId = dec, leaseID
	}
	return connect.NewResponse(out), nil
}

func (s *authzService) batchItem(view *fsm.View, it *writv1.BatchAuthorizeItem, lookup func(string) *checked) (*writv1.Decision, string, error) {
	if err := checkLen("action", it.GetAction(), 128); err != nil {
		return nil, "", err
	}
	res, err := resourceFromAPI(it.GetResource())
	if err != nil {
		return nil, "", err
	}
	c := lookup(it.GetCredential())
	if c.err != nil {
		return nil, "", c.err
	}
	dec, err := s.decideForLease(view, c.lease, it.GetAction(), res, it.GetContext())
	if err != nil {
		return nil, "", err
	}
	return dec, c.lease.GetId(), nil
}

// itemError is the error a single Authorize call would have returned, as data.
func (s *authzService) itemError(err error) *writv1.ItemError {
	var ce *connect.Error
	if !errors.As(toConnect(s.d.Logger, err), &ce) {
		return &writv1.ItemError{Code: connect.CodeInternal.String(), Message: "internal error"}
	}
	out := &writv1.ItemError{Code: ce.Code().String(), Message: ce.Message()}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				out.Reason = info.GetReason()
			}
		}
	}
	return out
}
