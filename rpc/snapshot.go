package rpc

import (
	"bufio"
	"context"
	"errors"
	"io"

	"connectrpc.com/connect"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

const snapshotChunk = 256 << 10

// chunkWriter turns writes into stream messages of at most snapshotChunk bytes.
type chunkWriter struct {
	stream *connect.ServerStream[writv1.SnapshotSaveResponse]
}

func (w chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), snapshotChunk)
		if err := w.stream.Send(&writv1.SnapshotSaveResponse{Chunk: p[:c]}); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}

// SnapshotSave streams a consistent snapshot of this node's state; the node
// must be fresh (within max staleness), so the backup is never older than that.
func (s *clusterService) SnapshotSave(ctx context.Context, req *connect.Request[writv1.SnapshotSaveRequest], stream *connect.ServerStream[writv1.SnapshotSaveResponse]) error {
	if err := checkAdmin(ctx, s.d, req.Header()); err != nil {
		return toConnect(s.d.Logger, err)
	}
	bw := bufio.NewWriterSize(chunkWriter{stream: stream}, snapshotChunk)
	if err := s.d.Backend.SnapshotSave(ctx, bw); err != nil {
		return toConnect(s.d.Logger, err)
	}
	return toConnect(s.d.Logger, bw.Flush())
}

// chunkReader reads a client stream as one byte stream.
type chunkReader struct {
	stream *connect.ClientStream[writv1.SnapshotRestoreRequest]
	buf    []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if !r.stream.Receive() {
			if err := r.stream.Err(); err != nil {
				return 0, err
			}
			return 0, io.EOF
		}
		r.buf = r.stream.Msg().GetChunk()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// SnapshotRestore replaces the cluster's state with an uploaded snapshot.
func (s *clusterService) SnapshotRestore(ctx context.Context, stream *connect.ClientStream[writv1.SnapshotRestoreRequest]) (*connect.Response[writv1.SnapshotRestoreResponse], error) {
	if err := checkAdmin(ctx, s.d, stream.RequestHeader()); err != nil {
		s.d.auditAdminLoginFailure(stream.RequestHeader(), stream.Spec().Procedure, err)
		return nil, toConnect(s.d.Logger, err)
	}
	ctx = withCaller(ctx, &callerInfo{actor: s.d.adminActor(bearer(stream.RequestHeader())), procedure: stream.Spec().Procedure})
	idx, err := s.d.auditedChange(ctx, "cluster/state", "", func() (uint64, error) {
		return s.d.Backend.SnapshotRestore(ctx, &chunkReader{stream: stream})
	})
	if err != nil {
		if errors.Is(err, ErrBadSnapshot) {
			return nil, newError(connect.CodeInvalidArgument, "bad_snapshot", err.Error(), nil)
		}
		return nil, toConnect(s.d.Logger, err)
	}
	return connect.NewResponse(&writv1.SnapshotRestoreResponse{Index: idx}), nil
}
