package rpc

import (
	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/writ-dev/writ/authz"
)

// policyError answers an invalid policy set: InvalidArgument with an
// ErrorInfo (reason invalid_policy) and a BadRequest whose field violations
// give each problem's position, policy id and reason.
func policyError(ve *authz.ValidationError) *connect.Error {
	e := newError(connect.CodeInvalidArgument, "invalid_policy", ve.Error(), map[string]string{"policy_set": ve.Set})
	br := &errdetails.BadRequest{}
	for _, p := range ve.Problems {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       "policy_set.cedar",
			Description: p.String(),
			Reason:      "INVALID_POLICY",
		})
	}
	if d, err := connect.NewErrorDetail(br); err == nil {
		e.AddDetail(d)
	}
	return e
}
