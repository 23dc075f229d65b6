package node

import (
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/memberlist"
	"google.golang.org/protobuf/proto"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

func TestPlanDeadRemovals(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	grace := time.Minute
	long, short := now.Add(-2*grace), now.Add(-grace/2)
	tests := []struct {
		name      string
		voters    []string
		alive     []string
		dead      map[string]time.Time
		minQuorum int
		want      []string
	}{
		{name: "nothing dead", voters: []string{"a", "b", "c"}, alive: []string{"a", "b", "c"}, minQuorum: 1},
		{name: "dead past grace is removed", voters: []string{"a", "b", "c"}, alive: []string{"a", "b"},
			dead: map[string]time.Time{"c": long}, minQuorum: 1, want: []string{"c"}},
		{name: "dead within grace stays", voters: []string{"a", "b", "c"}, alive: []string{"a", "b"},
			dead: map[string]time.Time{"c": short}, minQuorum: 1},
		{name: "min quorum holds the voter count", voters: []string{"a", "b", "c"}, alive: []string{"a", "b"},
			dead: map[string]time.Time{"c": long}, minQuorum: 3},
		{name: "no majority alive: refuse (could be our partition)", voters: []string{"a", "b", "c", "d"}, alive: []string{"a", "b"},
			dead: map[string]time.Time{"c": long, "d": long}, minQuorum: 1},
		{name: "two of five dead: both go, oldest first", voters: []string{"a", "b", "c", "d", "e"}, alive: []string{"a", "b", "c"},
			dead: map[string]time.Time{"e": long.Add(-time.Second), "d": long}, minQuorum: 1, want: []string{"e", "d"}},
		{name: "min quorum stops after the first", voters: []string{"a", "b", "c", "d", "e"}, alive: []string{"a", "b", "c"},
			dead: map[string]time.Time{"d": long, "e": long}, minQuorum: 4, want: []string{"d"}},
		{name: "unknown to gossip is neither alive nor removed", voters: []string{"a", "b", "c"}, alive: []string{"a", "b"},
			minQuorum: 1},
		{name: "suspect (not alive, not dead) blocks a majority", voters: []string{"a", "b", "c"}, alive: []string{"a"},
			dead: map[string]time.Time{"c": long}, minQuorum: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			alive := map[string]bool{}
			for _, id := range tc.alive {
				alive[id] = true
			}
			got := planDeadRemovals(tc.voters, alive, tc.dead, now, grace, tc.minQuorum)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("removals (-want +got):\n%s", diff)
			}
		})
	}
	if got := planDeadRemovals([]string{"a", "b", "c"}, map[string]bool{"a": true, "b": true}, map[string]time.Time{"c": long}, now, -1, 1); got != nil {
		t.Errorf("negative grace (cleanup off) removed %v", got)
	}
}

// FuzzMemberMeta feeds arbitrary gossip metadata (outside bytes: any
// host that reaches the gossip port) to the tracker: it must never panic,
// and it keeps metadata only when it decodes and names the gossip member.
func FuzzMemberMeta(f *testing.F) {
	good, _ := proto.Marshal(&writv1.NodeMeta{Id: "n1", ApiAddr: "127.0.0.1:7400", RaftAddr: "127.0.0.1:7401", FsmVersion: 1})
	leaving, _ := proto.Marshal(&writv1.NodeMeta{Id: "n1", Leaving: true})
	other, _ := proto.Marshal(&writv1.NodeMeta{Id: "n2"})
	for _, seed := range [][]byte{nil, good, leaving, other, {0xff, 0x01}, []byte("garbage")} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, meta []byte, gone bool) {
		tr := newMemberTracker()
		tr.observe(&memberlist.Node{Name: "n1", Addr: net.IPv4(127, 0, 0, 1), Port: 7402, Meta: meta}, gone)
		m := tr.snapshot()
		if len(m) != 1 {
			t.Fatalf("%d members tracked", len(m))
		}
		if m[0].Meta != nil && m[0].Meta.GetId() != "n1" {
			t.Fatalf("kept metadata naming %q for member n1", m[0].Meta.GetId())
		}
		switch m[0].State {
		case gossipAlive, gossipLeaving, gossipDead, gossipLeft:
		default:
			t.Fatalf("state %q", m[0].State)
		}
		if gone != (m[0].State == gossipDead || m[0].State == gossipLeft) {
			t.Fatalf("gone=%v but state %q", gone, m[0].State)
		}
	})
}
