package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
	"github.com/writ-dev/writ/rpc/gen/writ/v1/writv1connect"
)

// Batched forwarding. A follower does not send each write to the leader in
// its own NodeService.Forward call: writes waiting to be forwarded to the
// same leader join one call (up to maxForwardItems commands or
// maxForwardBytes), with at most maxForwardInflight calls in flight per
// leader. Under issuance load this turns hundreds of HTTP/2 requests a
// second, each a goroutine and a proposal on the leader, into a few dozen,
// and the leader's proposer gets whole batches to commit as one entry.
// A write that finds fewer than softForwardInflight calls in flight (one:
// none) is sent at once; otherwise a call that is neither full nor carrying
// a revocation waits for one to return and takes in what arrives meanwhile
// (the proposer's softInflight, for the same reason: fewer, larger calls and
// entries). Full calls and revocations may use up to maxForwardInflight.
const (
	maxForwardItems     = 256
	maxForwardBytes     = 512 << 10 // well under the API's 1 MiB request limit
	softForwardInflight = 1
	maxForwardInflight  = 8
	forwardQueueDepth   = 4096
)

type fwdCall struct {
	cmds   [][]byte
	size   int
	urgent bool           // a revocation: never held back
	done   chan fwdResult // buffered(1)
}

type fwdResult struct {
	results [][]byte
	err     error
}

// forwarder holds one queue per leader address. Safe for concurrent use.
type forwarder struct {
	ctx     context.Context // the node's: ends every queue on Close
	client  func(addr string) writv1connect.NodeServiceClient
	timeout time.Duration
	send    func(ctx context.Context, c writv1connect.NodeServiceClient, req *writv1.ForwardRequest) (*writv1.ForwardResponse, error)

	mu     sync.Mutex
	queues map[string]chan *fwdCall
	taken  atomic.Int64 // commands the loops have taken off the queues (tests watch it)
}

func newForwarder(ctx context.Context, timeout time.Duration, client func(string) writv1connect.NodeServiceClient,
	send func(context.Context, writv1connect.NodeServiceClient, *writv1.ForwardRequest) (*writv1.ForwardResponse, error)) *forwarder {
	return &forwarder{ctx: ctx, client: client, timeout: timeout, send: send, queues: map[string]chan *fwdCall{}}
}

// forward sends cmds (marshalled, marked forwarded) to the leader at addr
// with whatever else is waiting, and returns their results in order. An
// error of the shared call is every member's error; callers retry (request
// ids make that safe).
func (f *forwarder) forward(ctx context.Context, addr string, cmds [][]byte, urgent bool) ([][]byte, error) {
	call := &fwdCall{cmds: cmds, urgent: urgent, done: make(chan fwdResult, 1)}
	for _, c := range cmds {
		call.size += len(c)
	}
	if call.size > maxForwardBytes || len(cmds) > maxForwardItems {
		// Too big to share a call: send it alone.
		return f.sendBatch(addr, []*fwdCall{call})
	}
	q := f.queue(addr)
	select {
	case q <- call:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-f.ctx.Done():
		return nil, f.ctx.Err()
	}
	select {
	case r := <-call.done:
		return r.results, r.err
	case <-ctx.Done():
		// The call may still be applied; a retry is deduplicated.
		return nil, ctx.Err()
	}
}

func (f *forwarder) queue(addr string) chan *fwdCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	q, ok := f.queues[addr]
	if !ok {
		q = make(chan *fwdCall, forwardQueueDepth)
		f.queues[addr] = q
		go f.run(addr, q)
	}
	return q
}

// run batches the queue for addr until the node closes. A queue lives as
// long as the node: there is one per leader address ever seen, a handful.
func (f *forwarder) run(addr string, q chan *fwdCall) {
	inflight := make(chan struct{}, maxForwardInflight)
	freed := make(chan struct{}, 1) // a token whenever a call returns
	var carry *fwdCall
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-q:
				f.taken.Add(int64(len(first.cmds)))
			case <-f.ctx.Done():
				f.drain(q)
				return
			}
		}
		batch := []*fwdCall{first}
		items, size, urgent := len(first.cmds), first.size, first.urgent
		add := func(next *fwdCall) {
			if items+len(next.cmds) > maxForwardItems || size+next.size > maxForwardBytes {
				carry = next
				return
			}
			batch = append(batch, next)
			items += len(next.cmds)
			size += next.size
			urgent = urgent || next.urgent
		}
	fill:
		for carry == nil && items < maxForwardItems {
			select {
			case next := <-q:
				f.taken.Add(int64(len(next.cmds)))
				add(next)
			default:
				break fill
			}
		}
		// Hold a call that is neither full nor urgent while
		// softForwardInflight calls are out; what arrives meanwhile joins it.
		for carry == nil && items < maxForwardItems && !urgent && len(inflight) >= softForwardInflight {
			select {
			case <-freed:
			case next := <-q:
				f.taken.Add(int64(len(next.cmds)))
				add(next)
			case <-f.ctx.Done():
				failCalls(batch, f.ctx.Err())
				f.drain(q)
				return
			}
		}
		select {
		case inflight <- struct{}{}:
		case <-f.ctx.Done():
			failCalls(batch, f.ctx.Err())
			if carry != nil {
				failCalls([]*fwdCall{carry}, f.ctx.Err())
			}
			f.drain(q)
			return
		}
		go func() {
			defer func() {
				<-inflight
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
			_, _ = f.sendBatch(addr, batch)
		}()
	}
}

// sendBatch makes one Forward call for batch and hands each member its
// results; it returns the first member's for the unbatched path.
func (f *forwarder) sendBatch(addr string, batch []*fwdCall) ([][]byte, error) {
	req := &writv1.ForwardRequest{}
	for _, c := range batch {
		req.Commands = append(req.Commands, c.cmds...)
	}
	ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
	defer cancel()
	resp, err := f.send(ctx, f.client(addr), req)
	if err == nil && len(resp.GetResults()) != len(req.Commands) {
		err = fmt.Errorf("leader returned %d results for %d commands", len(resp.GetResults()), len(req.Commands))
	}
	if err != nil {
		failCalls(batch, err)
		return nil, err
	}
	off := 0
	for _, c := range batch {
		c.done <- fwdResult{results: resp.GetResults()[off : off+len(c.cmds)]}
		off += len(c.cmds)
	}
	return resp.GetResults()[:len(batch[0].cmds)], nil
}

func (f *forwarder) drain(q chan *fwdCall) {
	for {
		select {
		case c := <-q:
			failCalls([]*fwdCall{c}, context.Canceled)
		default:
			return
		}
	}
}

func failCalls(batch []*fwdCall, err error) {
	for _, c := range batch {
		select {
		case c.done <- fwdResult{err: err}:
		default:
		}
	}
}

// newNodeForwarder forwards through n's peer clients with the node token.
func (n *Node) newNodeForwarder() *forwarder {
	return newForwarder(n.ctx, n.cfg.HoldTimeout, n.peers.nodeClient,
		func(ctx context.Context, c writv1connect.NodeServiceClient, req *writv1.ForwardRequest) (*writv1.ForwardResponse, error) {
			resp, err := c.Forward(ctx, nodeRequest(n, req))
			if err != nil {
				return nil, err
			}
			return resp.Msg, nil
		})
}
