package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/authn"
	"github.com/writ-dev/writ/authz"
	"github.com/writ-dev/writ/credential"
	"github.com/writ-dev/writ/fsm/fsmpb"
)

// ErrorDomain names Writ in google.rpc.ErrorInfo details.
const ErrorDomain = "writ.dev"

// Request-shape errors raised by the handlers themselves.
var (
	errInvalid = errors.New("invalid request")
	errAuth    = errors.New("unauthenticated")
	errDenied  = errors.New("permission denied")
)

// invalidf is a client error: InvalidArgument with a message safe to show.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}

// reasonError carries a stable machine-readable reason code.
type reasonError struct {
	code   connect.Code
	reason string
	msg    string
}

func (e *reasonError) Error() string { return e.msg }

func withReason(code connect.Code, reason, msg string) error {
	return &reasonError{code: code, reason: reason, msg: msg}
}

// resultCodes is the one table from FSM result codes to Connect codes.
var resultCodes = map[fsmpb.ResultCode]connect.Code{
	fsmpb.ResultCode_RESULT_CODE_NOT_FOUND:           connect.CodeNotFound,
	fsmpb.ResultCode_RESULT_CODE_ALREADY_EXISTS:      connect.CodeAlreadyExists,
	fsmpb.ResultCode_RESULT_CODE_FAILED_PRECONDITION: connect.CodeFailedPrecondition,
	fsmpb.ResultCode_RESULT_CODE_RESOURCE_EXHAUSTED:  connect.CodeResourceExhausted,
	fsmpb.ResultCode_RESULT_CODE_INVALID_ARGUMENT:    connect.CodeInvalidArgument,
	fsmpb.ResultCode_RESULT_CODE_PERMISSION_DENIED:   connect.CodePermissionDenied,
	fsmpb.ResultCode_RESULT_CODE_ABORTED:             connect.CodeAborted,
	fsmpb.ResultCode_RESULT_CODE_POLICY_CHANGED:      connect.CodeAborted,
}

// resultError turns a non-OK FSM result into an error (nil for OK).
func resultError(r *fsmpb.Result) error {
	if r == nil {
		return connect.NewError(connect.CodeInternal, errors.New("no result"))
	}
	if r.GetCode() == fsmpb.ResultCode_RESULT_CODE_OK {
		return nil
	}
	code, ok := resultCodes[r.GetCode()]
	if !ok {
		code = connect.CodeInternal
	}
	reason := r.GetCode().String()
	return withReason(code, reason, r.GetMessage())
}

// toConnect maps any error from the domain packages or the backend to a
// Connect error with a message safe to send. Unknown errors are logged and
// answered as Internal without detail.
func toConnect(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	var re *reasonError
	if errors.As(err, &re) {
		return newError(re.code, re.reason, re.msg, nil)
	}
	var nl *NotLeaderError
	if errors.As(err, &nl) {
		meta := map[string]string{}
		if nl.LeaderAPIAddr != "" {
			meta["leader_id"] = nl.LeaderID
			meta["leader_addr"] = nl.LeaderAPIAddr
		}
		return newError(connect.CodeUnavailable, "not_leader", nl.Error(), meta)
	}
	if reason := authn.Reason(err); reason != "" {
		code := connect.CodeUnauthenticated
		switch {
		case authn.IsPermission(err):
			code = connect.CodePermissionDenied
		case authn.IsUnavailable(err):
			code = connect.CodeUnavailable
		}
		return newError(code, reason, err.Error(), nil)
	}
	if reason := credentialReason(err); reason != "" {
		return newError(connect.CodeUnauthenticated, reason, "credential rejected: "+reason, nil)
	}
	var ve *authz.ValidationError
	if errors.As(err, &ve) {
		return policyError(ve)
	}
	switch {
	case errors.Is(err, errInvalid), errors.Is(err, authz.ErrInvalidRequest):
		return newError(connect.CodeInvalidArgument, "invalid_argument", err.Error(), nil)
	case errors.Is(err, authz.ErrCompile):
		return newError(connect.CodeInvalidArgument, "invalid_policy", err.Error(), nil)
	case errors.Is(err, errAuth):
		return newError(connect.CodeUnauthenticated, "unauthenticated", err.Error(), nil)
	case errors.Is(err, errDenied):
		return newError(connect.CodePermissionDenied, "permission_denied", err.Error(), nil)
	case errors.Is(err, ErrStale):
		return newError(connect.CodeUnavailable, "stale", err.Error(), nil)
	case errors.Is(err, ErrNoLeader):
		return newError(connect.CodeUnavailable, "no_leader", err.Error(), nil)
	case errors.Is(err, ErrNotBootstrapped):
		return newError(connect.CodeUnavailable, "not_bootstrapped", err.Error(), nil)
	case errors.Is(err, audit.ErrNotDurable):
		// Unavailable: nothing was changed, the condition is the server's
		// and transient, and a retry (here or on another node) is safe.
		return newError(connect.CodeUnavailable, "audit_unavailable", "the audit record could not be made durable, so nothing was changed; retry later", nil)
	case errors.Is(err, ErrOverloaded):
		return newError(connect.CodeResourceExhausted, "overloaded", err.Error(), nil)
	case errors.Is(err, ErrFSMVersion):
		return newError(connect.CodeFailedPrecondition, "fsm_version", err.Error(), nil)
	case errors.Is(err, context.DeadlineExceeded):
		return newError(connect.CodeDeadlineExceeded, "deadline_exceeded", "deadline exceeded", nil)
	case errors.Is(err, context.Canceled):
		return newError(connect.CodeCanceled, "canceled", "canceled", nil)
	}
	log.Error("internal error", "err", err)
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

// credentialReason names why a credential was rejected.
func credentialReason(err error) string {
	switch {
	case errors.Is(err, credential.ErrMalformed):
		return "malformed_credential"
	case errors.Is(err, credential.ErrUnknownKey):
		return "unknown_signing_key"
	case errors.Is(err, credential.ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, credential.ErrExpired):
		return "expired"
	case errors.Is(err, credential.ErrNotYetValid):
		return "not_yet_valid"
	}
	return ""
}

func newError(code connect.Code, reason, msg string, meta map[string]string) *connect.Error {
	e := connect.NewError(code, errors.New(msg))
	if d, err := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta}); err == nil {
		e.AddDetail(d)
	}
	return e
}
