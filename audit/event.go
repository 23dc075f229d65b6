package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Type names what happened.
type Type string

// Event types. Issue, Renew and Admin are "must" events: their intent
// record is written with Durable before the change is proposed, so no change
// reaches the log without a durable audit record. The rest are spooled.
const (
	TypeLogin    Type = "login"    // an auth method accepted or refused a proof
	TypeDecision Type = "decision" // a Cedar decision that issued nothing (a deny of AuthorizeAndIssue or Renew)
	TypeIssue    Type = "issue"    // AuthorizeAndIssue allowed: a lease and its credential
	TypeRenew    Type = "renew"    // a lease renewed and a new credential minted
	TypeUse      Type = "use"      // a credential presented to Authorize or Verify
	TypeRevoke   Type = "revoke"   // a lease or everything an identity holds revoked
	TypeExpire   Type = "expire"   // the leader reaped an expired lease
	TypeAdmin    Type = "admin"    // any admin change (identities, roles, secret ids, policies, auth configs, signing keys, membership)
	TypeShadow   Type = "shadow"   // a shadow policy set disagreed with the active one on a decision
	TypeStart    Type = "start"    // the audit log opened on this node (the chain continues across restarts)
	TypeGap      Type = "gap"      // records were lost: how many and why
	TypeFiltered Type = "filtered" // records a configured filter dropped on purpose, counted by rule
)

// Phase splits a must event in two: the intent, durable before the change
// is proposed, and the result, spooled once the change committed or failed.
const (
	PhaseIntent = "intent"
	PhaseResult = "result"
)

// Decision values.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Stream is the audience an event belongs to; each stream has its own sink,
// filters and hash chain.
type Stream string

// The three streams.
const (
	StreamHuman    Stream = "human"    // admin-token callers: people at a terminal or console
	StreamWorkload Stream = "workload" // workloads, CI jobs, service accounts, and unidentified callers
	StreamAgent    Stream = "agent"    // AI agents
)

// Streams lists every stream in a fixed order.
var Streams = []Stream{StreamHuman, StreamWorkload, StreamAgent}

// Actor is who made the request.
type Actor struct {
	// ID is the identity id, or for an admin the keyed hash of its token
	// ("admin:hmac-sha256:..."), never the token.
	ID    string `json:"id,omitempty"`
	Kind  string `json:"kind,omitempty"` // identity kind, "admin" or "system"
	Owner string `json:"owner,omitempty"`
	Role  string `json:"role,omitempty"`
	Human bool   `json:"human"`
}

// Resource is the resource of an intent.
type Resource struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Error is how a request failed, as its caller saw it.
type Error struct {
	Code   string `json:"code"`
	Reason string `json:"reason,omitempty"`
}

// Item is one decision in a batch record. Its decision id is the record's
// decision_id + "_" + Index, as the caller got it; Context is the item's own
// request context (what the record's context adds is what Cedar saw too).
// An item with an Error has no decision.
type Item struct {
	Index         int            `json:"i"`
	Action        string         `json:"action,omitempty"`
	Resource      *Resource      `json:"resource,omitempty"`
	Context       map[string]any `json:"context,omitempty"`
	Decision      string         `json:"decision,omitempty"`
	Reason        string         `json:"reason,omitempty"`
	Policies      []string       `json:"policies,omitempty"`
	PolicySet     string         `json:"policy_set,omitempty"`
	PolicyVersion uint64         `json:"policy_version,omitempty"`
	Error         *Error         `json:"error,omitempty"`
}

// Gap describes records that were lost.
type Gap struct {
	Dropped uint64 `json:"dropped"`
	Reason  string `json:"reason"`
}

// Event is one audit record before it joins a chain. Secret material never
// goes in an Event: there is no field for it, and where correlation needs a
// secret (a failed login's secret id, an admin token, an unparseable
// credential) callers put Log.Hash of it in Hashes.
//
// Context is the caller's intent context, recorded as given: callers are
// told (docs/api.md) never to put secrets there.
type Event struct {
	Time          time.Time         `json:"time"`
	Node          string            `json:"node"`
	Stream        Stream            `json:"stream"`
	Type          Type              `json:"type"`
	Phase         string            `json:"phase,omitempty"`
	Method        string            `json:"method,omitempty"` // the RPC: Authorize, PutRole, ...
	RequestID     string            `json:"request_id,omitempty"`
	DecisionID    string            `json:"decision_id,omitempty"`
	Actor         Actor             `json:"actor"`
	AuthMethod    string            `json:"auth_method,omitempty"`
	Action        string            `json:"action,omitempty"`
	Resource      *Resource         `json:"resource,omitempty"`
	Target        string            `json:"target,omitempty"` // what an admin change or revocation touched: "role/ci-deploy"
	Context       map[string]any    `json:"context,omitempty"`
	Decision      string            `json:"decision,omitempty"` // allow or deny
	Reason        string            `json:"reason,omitempty"`
	Policies      []string          `json:"policies,omitempty"` // determining policy ids
	PolicySet     string            `json:"policy_set,omitempty"`
	PolicyVersion uint64            `json:"policy_version,omitempty"`
	LeaseID       string            `json:"lease_id,omitempty"`
	AppliedIndex  uint64            `json:"applied_index,omitempty"`
	Error         *Error            `json:"error,omitempty"`
	Hashes        map[string]string `json:"hmac,omitempty"`
	Gap           *Gap              `json:"gap,omitempty"`
	Filtered      map[string]uint64 `json:"filtered,omitempty"`
	// Items are the decisions of a BatchAuthorize call made with one
	// credential: the record's actor, lease, applied index and context
	// (context.auth, context.delegation) hold for each of them.
	Items []Item `json:"items,omitempty"`

	// Healthy marks a use of a credential whose lease is active: filters
	// may sample these. Not recorded.
	Healthy bool `json:"-"`
}

// StreamFor routes an actor: humans to human, agents to agent, every other
// machine (and an unidentified caller) to workload.
func StreamFor(a Actor) Stream {
	switch {
	case a.Human:
		return StreamHuman
	case a.Kind == "agent":
		return StreamAgent
	}
	return StreamWorkload
}

// HashPrefix marks a keyed hash in records.
const HashPrefix = "hmac-sha256:"

// DeriveKey derives the audit HMAC key from the cluster's replicated HMAC
// key (Bootstrap's hmac_key), so the audit key is never the key that hashes
// secret ids in the state, and every node computes the same one.
func DeriveKey(clusterKey []byte) []byte {
	m := hmac.New(sha256.New, clusterKey)
	m.Write([]byte("writ audit hmac v1"))
	return m.Sum(nil)
}

// HMAC returns "hmac-sha256:" + hex(HMAC-SHA256(key, value)). `writ audit
// hash VALUE` computes the same through a node, so an operator can find the
// records of a secret they hold without the log ever holding it.
func HMAC(key []byte, value string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(value))
	return HashPrefix + hex.EncodeToString(m.Sum(nil))
}
