package node

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/protobuf/proto"

	"github.com/writ-dev/writ/internal/logging"
	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// Gossip states as `writ status` shows them. memberlist v0.6 does not
// expose suspicion through its API (the state it reports on a Node is never
// updated), so a suspect member shows alive until it is declared dead; a
// member that drops out after announcing its departure (NodeMeta.leaving)
// has left, any other has failed (dead).
const (
	gossipAlive   = "alive"
	gossipLeaving = "leaving"
	gossipDead    = "dead"
	gossipLeft    = "left"
)

// gossip wraps one memberlist instance: failure detection and discovery of
// the other servers (their id, API, Raft address and FSM version travel as
// node metadata). Raft, not gossip, decides who votes: the leader
// reconciles what gossip sees into the Raft configuration.
type gossip struct {
	ml      *memberlist.Memberlist
	members *memberTracker
	// events is signalled (never blocking) on every membership change so
	// the reconcile and bootstrap-expect loops react at once.
	events chan struct{}
	meta   *metaDelegate
	once   sync.Once
}

func (n *Node) startGossip() error {
	md := &metaDelegate{meta: &writv1.NodeMeta{
		Id: n.cfg.NodeID, ApiAddr: n.cfg.AdvertiseAPI, RaftAddr: n.RaftAddr(),
		FsmVersion: n.fsmVersion(), BootstrapExpect: uint32(n.cfg.BootstrapExpect),
	}}
	if err := md.encode(); err != nil {
		return err
	}
	g := &gossip{members: n.members, events: make(chan struct{}, 1), meta: md}
	conf := memberlist.DefaultLANConfig()
	conf.Name = n.cfg.NodeID
	host, port, err := splitAddr(n.cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("%w: gossip addr: %v", ErrGossip, err)
	}
	conf.BindAddr, conf.BindPort = host, port
	if n.cfg.AdvertiseGossip != "" {
		ahost, aport, err := splitAddr(n.cfg.AdvertiseGossip)
		if err != nil {
			return fmt.Errorf("%w: advertise gossip addr: %v", ErrGossip, err)
		}
		ip := net.ParseIP(ahost)
		if ip == nil {
			ips, err := net.LookupIP(ahost)
			if err != nil || len(ips) == 0 {
				return fmt.Errorf("%w: advertise gossip addr %q: not an IP and does not resolve", ErrGossip, ahost)
			}
			ip = ips[0]
		}
		conf.AdvertiseAddr, conf.AdvertisePort = ip.String(), aport
	}
	if len(n.cfg.GossipKey) > 0 {
		kr, err := memberlist.NewKeyring(n.cfg.GossipExtraKeys, n.cfg.GossipKey)
		if err != nil {
			return fmt.Errorf("%w: keyring: %v", ErrGossip, err)
		}
		conf.Keyring = kr
		conf.GossipVerifyIncoming, conf.GossipVerifyOutgoing = true, true
	}
	t := n.cfg.Gossip
	if t.ProbeInterval > 0 {
		conf.ProbeInterval = t.ProbeInterval
	}
	if t.ProbeTimeout > 0 {
		conf.ProbeTimeout = t.ProbeTimeout
	}
	if t.GossipInterval > 0 {
		conf.GossipInterval = t.GossipInterval
	}
	if t.SuspicionMult > 0 {
		conf.SuspicionMult = t.SuspicionMult
	}
	if t.PushPullInterval > 0 {
		conf.PushPullInterval = t.PushPullInterval
	}
	// A server restarted at a new address may reclaim its name after this.
	conf.DeadNodeReclaimTime = 30 * time.Second
	conf.Delegate = md
	conf.Events = g
	conf.LogOutput = nil
	// memberlist's standard-log lines go through the node's slog logger
	// (component=memberlist, its [LEVEL] tags as slog levels).
	conf.Logger = logging.StdLogger(n.log, "memberlist")
	ml, err := memberlist.Create(conf)
	if err != nil {
		return fmt.Errorf("%w: start memberlist on %s: %v", ErrGossip, n.cfg.GossipAddr, err)
	}
	g.ml = ml
	n.gossip = g
	if host, _, err := net.SplitHostPort(n.GossipAddr()); err == nil && len(n.cfg.GossipKey) == 0 && !isLoopback(net.ParseIP(host)) {
		n.log.Warn("gossip is not encrypted: anyone who reaches the gossip port can see and join the cluster's membership; set a gossip key")
	}
	return nil
}

// GossipAddr is the address other nodes dial for gossip ("" when off).
// It comes from the tracker (memberlist reports its own node through
// NotifyJoin when it starts): reading memberlist's Node structs outside its
// callbacks races with its updates.
func (n *Node) GossipAddr() string {
	if n.gossip == nil {
		return ""
	}
	return n.members.get(n.cfg.NodeID).GossipAddr
}

func (g *gossip) signal() {
	select {
	case g.events <- struct{}{}:
	default:
	}
}

func (g *gossip) NotifyJoin(m *memberlist.Node)   { g.members.observe(m, false); g.signal() }
func (g *gossip) NotifyUpdate(m *memberlist.Node) { g.members.observe(m, false); g.signal() }
func (g *gossip) NotifyLeave(m *memberlist.Node)  { g.members.observe(m, true); g.signal() }

// join contacts the given gossip addresses; it succeeds if one answered.
func (g *gossip) join(addrs []string) error {
	if _, err := g.ml.Join(addrs); err != nil {
		return fmt.Errorf("%w: join %v: %v", ErrGossip, addrs, err)
	}
	return nil
}

// joinWithin is join bounded by d: an address that is not a gossip port
// (an API port) holds memberlist until its TCP timeout; the attempt goes on
// in the background and its outcome is dropped.
func (g *gossip) joinWithin(addrs []string, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- g.join(addrs) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return fmt.Errorf("%w: join %v: no answer within %s", ErrGossip, addrs, d)
	}
}

// states lists the members in gossip now (alive or leaving), by name.
func (g *gossip) states() map[string]string {
	out := map[string]string{}
	for _, m := range g.members.snapshot() {
		if m.State == gossipAlive || m.State == gossipLeaving {
			out[m.Name] = m.State
		}
	}
	return out
}

// leave announces the departure in the node metadata (so peers record
// "left", not "dead"), then leaves gossip.
func (g *gossip) leave(timeout time.Duration) error {
	if err := g.meta.setLeaving(); err != nil {
		return err
	}
	if err := g.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("%w: announce leave: %v", ErrGossip, err)
	}
	return g.ml.Leave(timeout)
}

func (g *gossip) shutdown() { g.once.Do(func() { _ = g.ml.Shutdown() }) }

// metaDelegate serves this node's metadata (fixed but for the leaving flag).
type metaDelegate struct {
	mu      sync.Mutex
	meta    *writv1.NodeMeta
	encoded []byte
}

func (d *metaDelegate) encode() error {
	b, err := proto.Marshal(d.meta)
	if err != nil {
		return err
	}
	if len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("%w: node metadata is %d bytes; at most %d (shorten the node id or addresses)", ErrGossip, len(b), memberlist.MetaMaxSize)
	}
	d.encoded = b
	return nil
}

func (d *metaDelegate) setLeaving() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.meta.Leaving = true
	return d.encode()
}

func (d *metaDelegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.encoded) > limit {
		return nil
	}
	return d.encoded
}
func (*metaDelegate) NotifyMsg([]byte)                {}
func (*metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (*metaDelegate) LocalState(bool) []byte          { return nil }
func (*metaDelegate) MergeRemoteState([]byte, bool)   {}

// member is what a node knows of one gossip member.
type member struct {
	Name       string
	Meta       *writv1.NodeMeta // nil when the metadata does not decode
	GossipAddr string
	State      string
	Since      time.Time // when State was entered (this node's clock)
}

// memberTracker records every member's last gossip event. Safe for
// concurrent use.
type memberTracker struct {
	mu  sync.Mutex
	m   map[string]member
	now func() time.Time
}

func newMemberTracker() *memberTracker {
	return &memberTracker{m: map[string]member{}, now: time.Now}
}

// observe records a gossip event; gone is true for NotifyLeave.
func (t *memberTracker) observe(n *memberlist.Node, gone bool) {
	var meta *writv1.NodeMeta
	if len(n.Meta) > 0 {
		meta = &writv1.NodeMeta{}
		if err := proto.Unmarshal(n.Meta, meta); err != nil || meta.GetId() != n.Name {
			meta = nil
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.m[n.Name]
	if meta == nil && ok {
		meta = old.Meta // a leave notice may carry no metadata
	}
	leaving := meta.GetLeaving() || (ok && old.State == gossipLeaving)
	var state string
	switch {
	case gone && leaving:
		state = gossipLeft
	case gone:
		state = gossipDead
	case meta.GetLeaving():
		state = gossipLeaving
	default:
		state = gossipAlive
	}
	since := t.now()
	if ok && old.State == state {
		since = old.Since
	}
	t.m[n.Name] = member{Name: n.Name, Meta: meta, GossipAddr: n.Address(), State: state, Since: since}
}

// state is a member's last recorded state ("" if unknown).
func (t *memberTracker) state(name string) string { return t.get(name).State }

// get returns what is known of a member (zero if nothing).
func (t *memberTracker) get(name string) member {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[name]
}

// snapshot returns the members sorted by name.
func (t *memberTracker) snapshot() []member {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]member, 0, len(t.m))
	for _, m := range t.m {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, port, nil
}

func isLoopback(ip net.IP) bool { return ip != nil && ip.IsLoopback() }

// JoinGossip joins the gossip pool through any of addrs (memberlist
// addresses); the leader then adds this node as a voter. It fails with
// ErrGossip when gossip is off or no address answered (a wrong gossip key
// looks like no answer).
func (n *Node) JoinGossip(addrs []string) error {
	if n.gossip == nil {
		return fmt.Errorf("%w: gossip is off", ErrGossip)
	}
	return n.gossip.join(addrs)
}
