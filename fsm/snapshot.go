package fsm

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Snapshot is a consistent point-in-time copy of the state. Taking one is
// O(1) (a memdb read transaction); writing it streams every record.
type Snapshot struct {
	txn   *memdb.Txn
	index uint64
}

// Snapshot captures the state as of the last Apply.
func (f *FSM) Snapshot() *Snapshot {
	return &Snapshot{txn: f.db.Load().Txn(false), index: f.applied.Load()}
}

var marshal = protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteTo streams the snapshot: a SnapshotHeader, then one length-delimited
// SnapshotRecord per record, tables in a fixed order and records sorted by
// id, so equal states produce equal bytes.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	return s.write(w, s.index)
}

func (s *Snapshot) write(w io.Writer, index uint64) (int64, error) {
	cw := &countWriter{w: w}
	v := &View{txn: s.txn, index: s.index}
	hdr := &fsmpb.SnapshotHeader{FsmVersion: Version, Index: index}
	if m := v.meta(); m != nil {
		hdr.ClusterId, hdr.AdminTokenSha256, hdr.HmacKey = m.ClusterID, m.AdminSHA256, m.HMACKey
	}
	if _, err := marshal.MarshalTo(cw, hdr); err != nil {
		return cw.n, err
	}
	emit := func(rec *fsmpb.SnapshotRecord) error {
		_, err := marshal.MarshalTo(cw, rec)
		return err
	}
	for _, table := range []string{tIdentity, tRole, tSecret, tHistory, tPolicy, tKey, tNode, tLease, tApplied} {
		it, err := s.txn.Get(table, "id")
		if err != nil {
			return cw.n, err
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			var rec *fsmpb.SnapshotRecord
			switch r := raw.(type) {
			case *fsmpb.Identity:
				rec = &fsmpb.SnapshotRecord{Record: &fsmpb.SnapshotRecord_Identity{Identity: r}}
			case *fsmpb.Role:
				rec = &fsmpb.SnapshotRecord{Record: &fsmpb.SnapshotRecord_Role{Role: r}}
			case *fsmpb.SecretID:
				rec = &fsmpb.SnapshotRecord{Record: &fsmpb.SnapshotRecord_SecretId{SecretId: r}}
			case *historyRow:
				rec = &fsmpb.SnapshotRecord{Record: &fsmpb.SnapshotRecord_PolicySet{PolicySet: r.PS}}
			case *fsmpb.PolicySet:
				// The active version is also in history; a marker record with
				// only name+version says which version is active.
				rec = &fsmpb.SnapshotRecord{Record: &fsmpb.SnapshotRecord_PolicySet{PolicySet: &fsmpb.PolicySet{Name: r.Name, Version: r.Version, ActivatedIndex: activeMarker}}}
			case *fsmpb.SigningKey:
				rec = &fsmpb.SnapshotRecord{Record: &fsmpb.SnapshotRecord_SigningKey{SigningKey: r}}
			case *fsmpb.Node:
				rec = &fsmpb.SnapshotRecord{Record: &fsmpb.SnapshotRecord_Node{Node: r}}
			case *fsmpb.Lease:
				rec = &fsmpb.SnapshotRecord{Record: &fsmpb.SnapshotRecord_Lease{Lease: r}}
			case *appliedRow:
				rec = &fsmpb.SnapshotRecord{Record: &fsmpb.SnapshotRecord_AppliedRequest{AppliedRequest: &fsmpb.AppliedRequest{
					RequestId: r.RequestID, Result: r.Result, TimeUnixNano: r.Time}}}
			}
			if err := emit(rec); err != nil {
				return cw.n, err
			}
		}
	}
	return cw.n, nil
}

// activeMarker flags the "this version is active" records in a snapshot.
// A real activated index can never be this large.
const activeMarker = ^uint64(0)

// Restore replaces the state with a snapshot stream. It builds a new
// database and swaps it in only when the whole stream parsed, so on error
// the old state stays.
func (f *FSM) Restore(r io.Reader) error {
	br := bufio.NewReader(r)
	hdr := &fsmpb.SnapshotHeader{}
	if err := protodelim.UnmarshalFrom(br, hdr); err != nil {
		return fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	if hdr.GetFsmVersion() > Version {
		return fmt.Errorf("%w: written by FSM version %d; this binary has %d", ErrBadSnapshot, hdr.GetFsmVersion(), Version)
	}
	db := newDB()
	txn := db.Txn(true)
	if hdr.GetClusterId() != "" {
		_ = txn.Insert(tMeta, &meta{Key: metaKeyRow, ClusterID: hdr.GetClusterId(), AdminSHA256: hdr.GetAdminTokenSha256(), HMACKey: hdr.GetHmacKey()})
	}
	history := map[string]*fsmpb.PolicySet{}
	var active []*fsmpb.PolicySet
	for {
		rec := &fsmpb.SnapshotRecord{}
		err := protodelim.UnmarshalFrom(br, rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			txn.Abort()
			return fmt.Errorf("%w: record: %v", ErrBadSnapshot, err)
		}
		var ierr error
		switch x := rec.GetRecord().(type) {
		case *fsmpb.SnapshotRecord_Identity:
			ierr = txn.Insert(tIdentity, x.Identity)
		case *fsmpb.SnapshotRecord_Role:
			ierr = txn.Insert(tRole, x.Role)
		case *fsmpb.SnapshotRecord_SecretId:
			ierr = txn.Insert(tSecret, x.SecretId)
		case *fsmpb.SnapshotRecord_PolicySet:
			ps := x.PolicySet
			if ps.GetActivatedIndex() == activeMarker {
				active = append(active, ps)
			} else {
				history[historyKey(ps.GetName(), ps.GetVersion())] = ps
				ierr = txn.Insert(tHistory, &historyRow{Key: historyKey(ps.GetName(), ps.GetVersion()), PS: ps})
			}
		case *fsmpb.SnapshotRecord_SigningKey:
			ierr = txn.Insert(tKey, x.SigningKey)
		case *fsmpb.SnapshotRecord_Node:
			ierr = txn.Insert(tNode, x.Node)
		case *fsmpb.SnapshotRecord_Lease:
			ierr = txn.Insert(tLease, x.Lease)
		case *fsmpb.SnapshotRecord_AppliedRequest:
			ierr = txn.Insert(tApplied, &appliedRow{RequestID: x.AppliedRequest.GetRequestId(), Time: x.AppliedRequest.GetTimeUnixNano(), Result: x.AppliedRequest.GetResult()})
		default:
			ierr = errors.New("unknown record")
		}
		if ierr != nil {
			txn.Abort()
			return fmt.Errorf("%w: %v", ErrBadSnapshot, ierr)
		}
	}
	var activated []*fsmpb.PolicySet
	for _, m := range active {
		ps, ok := history[historyKey(m.GetName(), m.GetVersion())]
		if !ok {
			txn.Abort()
			return fmt.Errorf("%w: active policy set %s v%d missing from history", ErrBadSnapshot, m.GetName(), m.GetVersion())
		}
		if err := txn.Insert(tPolicy, ps); err != nil {
			txn.Abort()
			return fmt.Errorf("%w: %v", ErrBadSnapshot, err)
		}
		activated = append(activated, ps)
	}
	txn.Commit()
	f.db.Store(db)
	f.setApplied(hdr.GetIndex())
	if f.cfg.OnPolicySetChange != nil {
		for _, ps := range activated {
			f.cfg.OnPolicySetChange(ps, false)
		}
	}
	return nil
}

// StateHash is the SHA-256 of the deterministic snapshot encoding without
// the applied index: equal hashes mean identical replicated records (cluster
// tests compare replicas; a rejected command leaves the hash unchanged).
func (f *FSM) StateHash() [32]byte {
	h := sha256.New()
	if _, err := f.Snapshot().write(h, 0); err != nil {
		panic(fmt.Sprintf("fsm: hash state: %v", err))
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
