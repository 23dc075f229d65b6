package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Snapshot is a consistent point-in-time state: taking one is O(1) (it pins
// the current immutable trees), and Applies after it do not change what it
// writes. It is safe to write from any goroutine, concurrently with Apply,
// and may be written more than once.
type Snapshot struct {
	db     *memdb.MemDB
	leases *leaseStore
	index  uint64
}

// Snapshot captures the state as of AppliedIndex().
func (f *FSM) Snapshot() *Snapshot {
	p := f.pub.Load()
	return &Snapshot{db: p.db, leases: p.leases, index: p.index}
}

// Index is the applied index the snapshot reflects.
func (s *Snapshot) Index() uint64 { return s.index }

// WriteTo streams the snapshot: a length-delimited SnapshotHeader, then one
// length-delimited SnapshotRecord per record, then an empty SnapshotRecord
// that marks the end (so a stream cut at a record boundary is detected).
// Tables come in a fixed order and records in key order, and messages are
// marshalled deterministically, so equal states write equal bytes:
//
//	identities (id), roles (name), secret ids (accessor),
//	policy set history (name, version): every stored version in full,
//	active policy sets (name): references holding only name and version
//	  (stored versions always have Cedar text, references never do),
//	signing keys (kid), nodes (id), owner epochs (owner), leases (id),
//	applied requests (entry index, then order applied),
//	auth configs (name), end marker.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	return s.write(w, s.index)
}

func (s *Snapshot) write(w io.Writer, index uint64) (int64, error) {
	sw := &streamWriter{w: w}
	txn := s.db.Txn(false)
	hdr := &fsmpb.SnapshotHeader{FsmVersion: SnapshotVersion, Index: index}
	if m, _ := txn.First(tMeta, "id", metaKey); m != nil {
		m := m.(*meta)
		hdr.ClusterId, hdr.AdminTokenSha256, hdr.HmacKey = m.ClusterID, m.AdminSHA256, m.HMACKey
	}
	sw.msg(hdr)

	rec := &fsmpb.SnapshotRecord{}
	var (
		identity = &fsmpb.SnapshotRecord_Identity{}
		role     = &fsmpb.SnapshotRecord_Role{}
		secret   = &fsmpb.SnapshotRecord_SecretId{}
		policy   = &fsmpb.SnapshotRecord_PolicySet{}
		key      = &fsmpb.SnapshotRecord_SigningKey{}
		node     = &fsmpb.SnapshotRecord_Node{}
		lease    = &fsmpb.SnapshotRecord_Lease{}
		owner    = &fsmpb.SnapshotRecord_OwnerEpoch{}
		applied  = &fsmpb.SnapshotRecord_AppliedRequest{AppliedRequest: &fsmpb.AppliedRequest{}}
		authCfg  = &fsmpb.SnapshotRecord_AuthConfig{}
	)
	for _, table := range []string{tIdentity, tRole, tSecret, tHistory, tPolicy, tKey, tNode, tOwner, "leases", tApplied, tAuth} {
		if table == "leases" {
			// The lease store, in id order, through one reused record.
			l := &fsmpb.Lease{}
			lease.Lease, rec.Record = l, lease
			s.leases.byID.Ascend(func(it idItem) bool {
				s.leases.fill(it.r, l)
				sw.msg(rec)
				return sw.err == nil
			})
			continue
		}
		it, err := txn.Get(table, "id")
		if err != nil {
			return sw.n, err
		}
		for raw := it.Next(); raw != nil && sw.err == nil; raw = it.Next() {
			switch r := raw.(type) {
			case *fsmpb.Identity:
				identity.Identity, rec.Record = r, identity
			case *fsmpb.Role:
				role.Role, rec.Record = r, role
			case *fsmpb.SecretID:
				secret.SecretId, rec.Record = r, secret
			case *fsmpb.PolicySet:
				if table == tPolicy {
					r = &fsmpb.PolicySet{Name: r.GetName(), Version: r.GetVersion()}
				}
				policy.PolicySet, rec.Record = r, policy
			case *fsmpb.SigningKey:
				key.SigningKey, rec.Record = r, key
			case *fsmpb.Node:
				node.Node, rec.Record = r, node
			case *fsmpb.OwnerEpoch:
				owner.OwnerEpoch, rec.Record = r, owner
			case *fsmpb.AuthConfig:
				authCfg.AuthConfig, rec.Record = r, authCfg
			case *appliedEntry:
				for _, req := range r.Reqs {
					ar := applied.AppliedRequest
					ar.RequestId, ar.Result, ar.TimeUnixNano = req.ID, req.Result, r.Time
					rec.Record = applied
					sw.msg(rec)
				}
				continue
			}
			sw.msg(rec)
		}
	}
	rec.Record = nil
	sw.msg(rec) // end marker
	return sw.n, sw.err
}

// streamWriter writes length-delimited deterministic messages through one
// reusable buffer, remembering the first error and the byte count.
type streamWriter struct {
	w   io.Writer
	buf []byte
	n   int64
	err error
}

func (sw *streamWriter) msg(m proto.Message) {
	if sw.err != nil {
		return
	}
	sw.buf = protowire.AppendVarint(sw.buf[:0], uint64(encodeOpts.Size(m)))
	if sw.buf, sw.err = encodeOpts.MarshalAppend(sw.buf, m); sw.err != nil {
		return
	}
	var n int
	n, sw.err = sw.w.Write(sw.buf)
	sw.n += int64(n)
}

// StateHash is the SHA-256 of the snapshot encoding with the applied index
// left out of the header: every replicated record is included (dedupe
// memory too), so equal hashes mean identical replicas, and an entry that
// changed nothing (a rejected command without a request id to remember)
// leaves it unchanged. Cluster tests compare it across replicas.
func (f *FSM) StateHash() [32]byte {
	h := sha256.New()
	if _, err := f.Snapshot().write(h, 0); err != nil {
		panic(fmt.Sprintf("fsm: hash state: %v", err)) // hash.Hash never fails
	}
	return [32]byte(h.Sum(nil))
}

// Restore replaces the state with a snapshot stream written by WriteTo. It
// builds a new database from the whole stream and swaps it in only when the
// stream was complete and valid; on error the old state stays and an error
// wrapping ErrBadSnapshot is returned. Then it publishes the snapshot's
// index, wakes WaitApplied callers and calls OnPolicySetChange.
//
// Concurrency: like Apply, one goroutine at a time; views taken before the
// swap keep reading the old state.
func (f *FSM) Restore(r io.Reader) error {
	db, leases, hdr, err := readSnapshot(r)
	if err != nil {
		f.cfg.Logger.Error("fsm: restore failed; keeping the current state", "err", err)
		return err
	}
	before := f.View().PolicySets()
	f.db, f.leases, f.meta = db, leases, nil
	f.publish(hdr.GetIndex())
	f.revs.reset(hdr.GetIndex())
	after := f.View().PolicySets()
	f.cfg.Logger.Info("fsm: restored snapshot", "index", hdr.GetIndex(), "cluster", hdr.GetClusterId())
	if f.cfg.OnPolicySetChange != nil {
		active := make(map[string]bool, len(after))
		for _, ps := range after {
			active[ps.GetName()] = true
			f.cfg.OnPolicySetChange(ps, false)
		}
		for _, ps := range before {
			if !active[ps.GetName()] {
				f.cfg.OnPolicySetChange(ps, true)
			}
		}
	}
	return nil
}

type byteReader interface {
	io.Reader
	io.ByteReader
}

func badSnapshot(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, args...))
}

// delimitedReader reads length-delimited messages (protodelim's framing)
// through one reused buffer that grows only as data actually arrives, so a
// corrupt length costs nothing. (proto.Unmarshal copies what it keeps.)
type delimitedReader struct {
	r   byteReader
	buf bytes.Buffer
}

// next returns the next message's bytes, io.EOF at a clean end of stream,
// or io.ErrUnexpectedEOF for a cut one.
func (d *delimitedReader) next() ([]byte, error) {
	size, err := binary.ReadUvarint(d.r) // io.EOF only before the first byte
	if err != nil {
		return nil, err
	}
	if size > MaxEntryBytes {
		return nil, fmt.Errorf("message of %d bytes exceeds %d", size, MaxEntryBytes)
	}
	d.buf.Reset()
	if n, err := io.CopyN(&d.buf, d.r, int64(size)); n < int64(size) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return d.buf.Bytes(), nil
}

func (d *delimitedReader) read(m proto.Message) error {
	b, err := d.next()
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, m)
}

func readSnapshot(r io.Reader) (*memdb.MemDB, *leaseStore, *fsmpb.SnapshotHeader, error) {
	br, ok := r.(byteReader)
	if !ok {
		br = bufio.NewReaderSize(r, 1<<16)
	}
	in := &delimitedReader{r: br}
	hdr := &fsmpb.SnapshotHeader{}
	if err := in.read(hdr); err != nil {
		return nil, nil, nil, badSnapshot("header: %v", err)
	}
	if v := hdr.GetFsmVersion(); v == 0 || v > Version {
		return nil, nil, nil, badSnapshot("written by FSM version %d; this binary reads 1..%d", v, Version)
	}

	db := newDB()
	leases := newLeaseStore()
	txn := db.Txn(true)
	defer txn.Abort()
	insert := func(table string, obj any) error {
		if err := txn.Insert(table, obj); err != nil {
			return badSnapshot("%s record: %v", table, err)
		}
		return nil
	}
	if hdr.GetClusterId() != "" {
		if err := insert(tMeta, &meta{ClusterID: hdr.GetClusterId(), AdminSHA256: hdr.GetAdminTokenSha256(), HMACKey: hdr.GetHmacKey()}); err != nil {
			return nil, nil, nil, err
		}
	}
	var (
		active []*fsmpb.PolicySet
		entry  *appliedEntry
	)
	for n := 0; ; n++ {
		rec := &fsmpb.SnapshotRecord{}
		if err := in.read(rec); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the end marker is missing
			}
			return nil, nil, nil, badSnapshot("record %d: %v", n, err)
		}
		var err error
		switch x := rec.GetRecord().(type) {
		case nil:
			if len(rec.ProtoReflect().GetUnknown()) > 0 {
				return nil, nil, nil, badSnapshot("record %d is of a kind this version does not know", n)
			}
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				return nil, nil, nil, badSnapshot("data after the end marker")
			}
			if entry != nil {
				if err := insert(tApplied, entry); err != nil {
					return nil, nil, nil, err
				}
			}
			for _, ref := range active {
				ps, _ := txn.First(tHistory, "id", ref.GetName(), ref.GetVersion())
				if ps == nil {
					return nil, nil, nil, badSnapshot("active policy set %q version %d is not in the history", ref.GetName(), ref.GetVersion())
				}
				if err := insert(tPolicy, ps); err != nil {
					return nil, nil, nil, err
				}
			}
			txn.Commit()
			return db, leases, hdr, nil
		case *fsmpb.SnapshotRecord_Identity:
			err = insert(tIdentity, x.Identity)
		case *fsmpb.SnapshotRecord_Role:
			err = insert(tRole, x.Role)
		case *fsmpb.SnapshotRecord_SecretId:
			err = insert(tSecret, x.SecretId)
		case *fsmpb.SnapshotRecord_PolicySet:
			if x.PolicySet.GetCedar() == "" {
				active = append(active, x.PolicySet)
			} else {
				err = insert(tHistory, x.PolicySet)
			}
		case *fsmpb.SnapshotRecord_SigningKey:
			err = insert(tKey, x.SigningKey)
		case *fsmpb.SnapshotRecord_Node:
			err = insert(tNode, x.Node)
		case *fsmpb.SnapshotRecord_OwnerEpoch:
			err = insert(tOwner, x.OwnerEpoch)
		case *fsmpb.SnapshotRecord_Lease:
			l := x.Lease
			if !validID(l.GetId()) || l.GetIdentity() == "" || l.GetRole() == "" {
				return nil, nil, nil, badSnapshot("record %d: lease without id, identity or role", n)
			}
			if _, dup := leases.get(l.GetId()); dup {
				return nil, nil, nil, badSnapshot("record %d: lease %q twice", n, l.GetId())
			}
			leases.insert(leases.record(l))
			leases.setReason(l.GetId(), l.GetRevokeReason())
		case *fsmpb.SnapshotRecord_AuthConfig:
			err = insert(tAuth, x.AuthConfig)
		case *fsmpb.SnapshotRecord_AppliedRequest:
			ar := x.AppliedRequest
			idx := ar.GetResult().GetIndex()
			switch {
			case ar.GetRequestId() == "" || ar.GetResult() == nil:
				return nil, nil, nil, badSnapshot("record %d: applied request without id or result", n)
			case entry != nil && idx < entry.Index:
				return nil, nil, nil, badSnapshot("record %d: applied requests out of order", n)
			case entry != nil && idx == entry.Index:
				entry.Reqs = append(entry.Reqs, appliedReq{ID: ar.GetRequestId(), Result: ar.GetResult()})
				continue
			}
			if entry != nil {
				if err := insert(tApplied, entry); err != nil {
					return nil, nil, nil, err
				}
			}
			entry = &appliedEntry{Index: idx, Time: ar.GetTimeUnixNano(), Reqs: []appliedReq{{ID: ar.GetRequestId(), Result: ar.GetResult()}}}
		}
		if err != nil {
			return nil, nil, nil, err
		}
	}
}
