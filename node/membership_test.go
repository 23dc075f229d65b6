package node

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
