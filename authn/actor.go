package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
)

// ActorKind says whether a human or a machine is acting.
type ActorKind string

// Actor kinds. Humans are not machines: a person administering Writ
// authenticates separately (an admin token now, OIDC later) and is never a
// workload principal; a machine acts only through an auth method and the
// leases it was issued.
const (
	ActorHuman   ActorKind = "human"
	ActorMachine ActorKind = "machine"
)

// Actor is who is acting on one request, as the API established it. rpc
// puts it in the request context (WithActor) once the caller is
// authenticated; audit, logging and metrics read it with ActorFrom. It
// holds no secret: an admin token is named by a short hash.
type Actor struct {
	Kind ActorKind
	// ID names the actor: "admin:<first 16 hex of SHA-256(token)>" for a
	// human with the admin token, the identity id for a machine.
	ID string
	// Method is how the actor authenticated: "admin_token", or an auth
	// method (approle, jwt, mtls), or "credential" for a call made with an
	// issued credential.
	Method string
	// Role is the role a machine logged in through (empty for humans).
	Role string
	// SourceIP is the caller's address, when known.
	SourceIP string
}

// IsHuman reports whether a person is acting.
func (a Actor) IsHuman() bool { return a.Kind == ActorHuman }

type actorKey struct{}

// WithActor returns ctx carrying a. A later WithActor replaces it (a call
// that authenticates a machine inside a request the API received).
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor of the request ctx belongs to, and false when
// none was established (an unauthenticated or node-to-node call).
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

// AdminActor is the human actor an admin token authenticates.
func AdminActor(token, sourceIP string) Actor {
	sum := sha256.Sum256([]byte(token))
	return Actor{Kind: ActorHuman, ID: "admin:" + hex.EncodeToString(sum[:8]), Method: "admin_token", SourceIP: sourceIP}
}

// MachineActor is the actor a login establishes.
func MachineActor(p *Principal) Actor {
	a := Actor{Kind: ActorMachine, ID: p.Identity.GetId(), Method: p.Method, Role: p.Role.GetName()}
	if s, ok := p.Evidence[EvidenceSourceIP].(string); ok {
		a.SourceIP = s
	}
	return a
}
