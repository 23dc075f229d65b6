package fsm

import "github.com/writ-dev/writ/fsm/fsmpb"

// PolicySetVersions lists every version of name kept in the history
// (including those of a deleted set), newest first.
func (v *View) PolicySetVersions(name string) []*fsmpb.PolicySet {
	it, err := v.txn.LowerBound(tHistory, "id", name, uint64(0))
	if err != nil {
		panic(err)
	}
	var out []*fsmpb.PolicySet
	for obj := it.Next(); obj != nil; obj = it.Next() {
		ps := obj.(*fsmpb.PolicySet)
		if ps.GetName() != name {
			break
		}
		out = append(out, ps)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
