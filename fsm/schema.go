package fsm

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Table names. Every table's primary index is "id".
const (
	tMeta     = "meta"
	tIdentity = "identities"
	tRole     = "roles"
	tSecret   = "secret_ids"
	tPolicy   = "policy_sets"    // the active version of each set, by name
	tHistory  = "policy_history" // every version ever stored, by (name, version)
	tKey      = "signing_keys"
	tNode     = "nodes"
	tApplied  = "applied_requests" // one row per log entry that applied request ids
	tAuth     = "auth_configs"     // JWT/OIDC and mTLS auth configs, by name
	tOwner    = "owner_epochs"     // revocation epoch per owner (absent: 0)
)

// Secondary index names.
const (
	iRoleID  = "role_id" // roles by AppRole role id (unique)
	iRole    = "role"    // secret ids by role
	iHMAC    = "hmac"    // secret ids by keyed hash (unique)
	iRequest = "request" // applied rows by request id (unique, multi-valued)
)

// meta is the one-row table of cluster-wide facts set by Bootstrap.
type meta struct {
	ClusterID   string
	AdminSHA256 []byte
	HMACKey     []byte
}

const metaKey = "cluster"

// appliedEntry remembers the request ids one log entry applied successfully,
// with their results, for dedupe. Grouping by entry means a batch of 128
// items costs one row and 128 index keys, not 128 rows with two indexes each.
type appliedEntry struct {
	Index uint64 // Raft index of the entry
	Time  int64  // the entry's header time: rows older than the window are pruned
	Reqs  []appliedReq
}

type appliedReq struct {
	ID     string
	Result *fsmpb.Result
}

func (e *appliedEntry) result(id string) *fsmpb.Result {
	for i := range e.Reqs {
		if e.Reqs[i].ID == id {
			return e.Reqs[i].Result
		}
	}
	return nil
}

// ---- indexers ----
//
// Typed indexers (no reflection, one allocation per key). Strings end in a
// NUL so that a lookup of "a" never matches "ab"; ids are validated to carry
// no control characters, so no key contains another NUL. Unsigned integers
// are big-endian nibbles, so byte order is numeric order.

func strKey(s string, extra int) []byte {
	b := make([]byte, len(s)+1, len(s)+1+extra)
	copy(b, s)
	return b
}

// appendUint64 writes v as 16 big-endian nibbles. Byte keys of nearby
// numbers (times, indexes) would put up to 256 edges in one radix node,
// which memdb copies whole on every insert; nibbles cap nodes at 16 edges.
func appendUint64(b []byte, v uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, byte(v>>shift)&0xf)
	}
	return b
}

func argString(args []any, i int) (string, error) {
	if len(args) <= i {
		return "", fmt.Errorf("want %d arguments, got %d", i+1, len(args))
	}
	s, ok := args[i].(string)
	if !ok {
		return "", fmt.Errorf("argument %d: want string, got %T", i, args[i])
	}
	return s, nil
}

// pkRoom is the room a key needs for the primary key memdb appends to the
// values of a non-unique index (pk is nil for unique ones): it saves memdb a
// reallocation per insert.
func pkRoom[T any](pk func(T) string, o T) int {
	if pk == nil {
		return 0
	}
	return len(pk(o)) + 1
}

// stringIndex indexes one string field; empty values are not indexed.
type stringIndex[T any] struct {
	get func(T) string
	pk  func(T) string // non-unique indexes: the table's primary key
}

func (x stringIndex[T]) FromObject(obj any) (bool, []byte, error) {
	o := obj.(T)
	s := x.get(o)
	if s == "" {
		return false, nil, nil
	}
	return true, strKey(s, pkRoom(x.pk, o)), nil
}

func (x stringIndex[T]) FromArgs(args ...any) ([]byte, error) {
	s, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	return strKey(s, 0), nil
}

// bytesIndex indexes one []byte field; empty values are not indexed.
type bytesIndex[T any] struct{ get func(T) []byte }

func (x bytesIndex[T]) FromObject(obj any) (bool, []byte, error) {
	b := x.get(obj.(T))
	if len(b) == 0 {
		return false, nil, nil
	}
	return true, append([]byte(nil), b...), nil
}

func (x bytesIndex[T]) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want 1 argument, got %d", len(args))
	}
	b, ok := args[0].([]byte)
	if !ok {
		return nil, fmt.Errorf("want []byte, got %T", args[0])
	}
	return b, nil
}

// historyIndex keys policy set versions by (name, version).
type historyIndex struct{}

func historyKey(name string, version uint64) []byte {
	return appendUint64(strKey(name, 16), version)
}

func (historyIndex) FromObject(obj any) (bool, []byte, error) {
	ps := obj.(*fsmpb.PolicySet)
	if ps.GetName() == "" {
		return false, nil, nil
	}
	return true, historyKey(ps.GetName(), ps.GetVersion()), nil
}

func (historyIndex) FromArgs(args ...any) ([]byte, error) {
	s, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	if len(args) != 2 {
		return nil, fmt.Errorf("want 2 arguments, got %d", len(args))
	}
	v, ok := args[1].(uint64)
	if !ok {
		return nil, fmt.Errorf("argument 1: want uint64, got %T", args[1])
	}
	return historyKey(s, v), nil
}

// entryIndex keys applied rows by Raft index.
type entryIndex struct{}

func (entryIndex) FromObject(obj any) (bool, []byte, error) {
	return true, appendUint64(make([]byte, 0, 16), obj.(*appliedEntry).Index), nil
}

func (entryIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want 1 argument, got %d", len(args))
	}
	v, ok := args[0].(uint64)
	if !ok {
		return nil, fmt.Errorf("want uint64, got %T", args[0])
	}
	return appendUint64(make([]byte, 0, 16), v), nil
}

// requestIndex indexes every request id of an applied row.
type requestIndex struct{}

func (requestIndex) FromObject(obj any) (bool, [][]byte, error) {
	e := obj.(*appliedEntry)
	if len(e.Reqs) == 0 {
		return false, nil, nil
	}
	keys := make([][]byte, len(e.Reqs))
	for i := range e.Reqs {
		keys[i] = strKey(e.Reqs[i].ID, 0)
	}
	return true, keys, nil
}

func (requestIndex) FromArgs(args ...any) ([]byte, error) {
	s, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	return strKey(s, 0), nil
}

func primary[T any](get func(T) string) map[string]*memdb.IndexSchema {
	return map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: stringIndex[T]{get: get}}}
}

var schema = func() *memdb.DBSchema {
	s := &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tMeta:     {Indexes: map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: stringIndex[*meta]{get: func(*meta) string { return metaKey }}}}},
		tIdentity: {Indexes: primary((*fsmpb.Identity).GetId)},
		tRole:     {Indexes: primary((*fsmpb.Role).GetName)},
		tSecret:   {Indexes: primary((*fsmpb.SecretID).GetAccessor)},
		tPolicy:   {Indexes: primary((*fsmpb.PolicySet).GetName)},
		tHistory:  {Indexes: map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: historyIndex{}}}},
		tKey:      {Indexes: primary((*fsmpb.SigningKey).GetKid)},
		tNode:     {Indexes: primary((*fsmpb.Node).GetId)},
		tApplied:  {Indexes: map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: entryIndex{}}}},
		tAuth:     {Indexes: primary((*fsmpb.AuthConfig).GetName)},
		tOwner:    {Indexes: primary((*fsmpb.OwnerEpoch).GetOwner)},
	}}
	// Every index is required (AllowMissing false): Apply validates the
	// fields, and Restore rejects a record that lacks one.
	idx := func(table, name string, unique bool, indexer memdb.Indexer) {
		s.Tables[table].Indexes[name] = &memdb.IndexSchema{Name: name, Unique: unique, Indexer: indexer}
	}
	idx(tRole, iRoleID, true, stringIndex[*fsmpb.Role]{get: (*fsmpb.Role).GetRoleId})
	idx(tSecret, iRole, false, stringIndex[*fsmpb.SecretID]{(*fsmpb.SecretID).GetRole, (*fsmpb.SecretID).GetAccessor})
	idx(tSecret, iHMAC, true, bytesIndex[*fsmpb.SecretID]{(*fsmpb.SecretID).GetSecretHmac})
	idx(tApplied, iRequest, true, requestIndex{})
	for name, t := range s.Tables {
		t.Name = name
	}
	return s
}()

// newDB returns an empty database for the writer side of an FSM. It is a
// memdb "snapshot" of a fresh database: memdb skips watch-channel mutation
// tracking on those, and nothing here uses watches, so commits stay cheap.
func newDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema)
	if err != nil {
		panic(fmt.Sprintf("fsm: schema: %v", err)) // a programming error every test catches
	}
	return db.Snapshot()
}
