package authz

import "errors"

var (
	// ErrInvalidRequest wraps every error Decide returns: the request cannot
	// be evaluated as given (a context value Cedar cannot represent, a bad
	// type name or id, an unknown identity kind). It is the caller's fault
	// and carries no decision.
	ErrInvalidRequest = errors.New("authz: invalid request")

	// ErrCompile wraps every error Compile (and Engine.Get) returns: the
	// policy text does not parse, is too large, or its @id annotations are
	// missing a value or collide.
	ErrCompile = errors.New("authz: policy set does not compile")

	// ErrUnknownKind is returned by PrincipalType for an identity kind that
	// has no Cedar entity type.
	ErrUnknownKind = errors.New("authz: unknown identity kind")
)

var (
	// ErrInvalidPolicySet is wrapped by every error Schema.Validate returns:
	// the set does not compile or does not validate against the schema.
	ErrInvalidPolicySet = errors.New("authz: invalid policy set")

	// ErrSchema wraps every error ParseSchema returns.
	ErrSchema = errors.New("authz: invalid schema")
)
