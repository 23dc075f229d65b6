package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Table names.
const (
	tMeta      = "meta"
	tIdentity  = "identities"
	tRole      = "roles"
	tSecret    = "secret_ids"
	tPolicy    = "policy_sets"
	tHistory   = "policy_history"
	tKey       = "signing_keys"
	tNode      = "nodes"
	tLease     = "leases"
	tApplied   = "applied_requests"
	metaKeyRow = "cluster"
)

// meta is the one-row table of cluster-wide facts set by Bootstrap.
type meta struct {
	Key         string
	ClusterID   string
	AdminSHA256 []byte
	HMACKey     []byte
}

// historyRow is one stored version of a policy set.
type historyRow struct {
	Key string // name \x00 version (20 digits)
	PS  *fsmpb.PolicySet
}

func historyKey(name string, version uint64) string {
	return fmt.Sprintf("%s\x00%020d", name, version)
}

// appliedRow remembers a request id's result for dedupe.
type appliedRow struct {
	RequestID string
	Time      int64
	Result    *fsmpb.Result
}

// int64Index indexes an int64 field (big-endian, order-preserving for non-negative values).
type int64Index struct{ get func(any) int64 }

func (x int64Index) FromObject(obj any) (bool, []byte, error) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(x.get(obj)))
	return true, b[:], nil
}

func (x int64Index) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, errors.New("want one argument")
	}
	v, ok := args[0].(int64)
	if !ok {
		return nil, fmt.Errorf("want int64, got %T", args[0])
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return b[:], nil
}

// bytesIndex indexes a []byte field.
type bytesIndex struct{ get func(any) []byte }

func (x bytesIndex) FromObject(obj any) (bool, []byte, error) {
	v := x.get(obj)
	if len(v) == 0 {
		return false, nil, nil
	}
	return true, append([]byte(nil), v...), nil
}

func (x bytesIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, errors.New("want one argument")
	}
	v, ok := args[0].([]byte)
	if !ok {
		return nil, fmt.Errorf("want []byte, got %T", args[0])
	}
	return v, nil
}

func str(field string) *memdb.StringFieldIndex { return &memdb.StringFieldIndex{Field: field} }

func idIndex(field string) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: "id", Unique: true, Indexer: str(field)}
}

var schema = &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
	tMeta:     {Name: tMeta, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Key")}},
	tIdentity: {Name: tIdentity, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Id")}},
	tRole: {Name: tRole, Indexes: map[string]*memdb.IndexSchema{
		"id":      idIndex("Name"),
		"role_id": {Name: "role_id", Unique: true, Indexer: str("RoleId")},
	}},
	tSecret: {Name: tSecret, Indexes: map[string]*memdb.IndexSchema{
		"id":   idIndex("Accessor"),
		"role": {Name: "role", Indexer: str("Role")},
		"hmac": {Name: "hmac", Unique: true, AllowMissing: true, Indexer: bytesIndex{func(o any) []byte { return o.(*fsmpb.SecretID).GetSecretHmac() }}},
	}},
	tPolicy:  {Name: tPolicy, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Name")}},
	tHistory: {Name: tHistory, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Key")}},
	tKey:     {Name: tKey, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Kid")}},
	tNode:    {Name: tNode, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Id")}},
	tLease: {Name: tLease, Indexes: map[string]*memdb.IndexSchema{
		"id":       idIndex("Id"),
		"identity": {Name: "identity", Indexer: str("Identity")},
		"role":     {Name: "role", Indexer: str("Role")},
		"expiry":   {Name: "expiry", Indexer: int64Index{func(o any) int64 { return o.(*fsmpb.Lease).GetExpiresUnixNano() }}},
	}},
	tApplied: {Name: tApplied, Indexes: map[string]*memdb.IndexSchema{
		"id":   idIndex("RequestID"),
		"time": {Name: "time", Indexer: int64Index{func(o any) int64 { return o.(*appliedRow).Time }}},
	}},
}}

func newDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema)
	if err != nil {
		panic(fmt.Sprintf("fsm schema: %v", err)) // a programming error, caught by every test
	}
	return db
}
