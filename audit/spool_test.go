package audit

import (
	"fmt"
	"testing"
)

// TestSpoolCloseKeepsOnlyUnread: what the writer read past (the sink took
// it) is not replayed after a clean close and reopen, however much of the
// spool was read; what it did not read is, in order.
func TestSpoolCloseKeepsOnlyUnread(t *testing.T) {
	for _, tc := range []struct {
		name        string
		spooled     int
		read        int   // records taken and committed before close
		segBytes    int64 // 0: the default
		wantReplays int
	}{
		{"nothing read", 10, 0, 0, 10},
		{"partly read", 10, 4, 0, 6},
		{"all read", 10, 10, 0, 0},
		{"partly read across segments", 40, 25, 64, 15},
		{"all read across segments", 40, 40, 64, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sp, err := openSpool(dir, "workload", 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if tc.segBytes > 0 {
				sp.segBytes = tc.segBytes
			}
			for i := range tc.spooled {
				if refused, err := sp.append([][]byte{fmt.Appendf(nil, "rec-%03d", i)}); err != nil || refused != 0 {
					t.Fatalf("append %d: refused %d, %v", i, refused, err)
				}
			}
			for read := 0; read < tc.read; {
				recs, n, _, err := sp.take(nil, tc.read-read, 1<<20)
				if err != nil || len(recs) == 0 {
					t.Fatalf("take after %d: %d records, %v", read, len(recs), err)
				}
				sp.commit(n, len(recs))
				read += len(recs)
			}
			if err := sp.close(); err != nil {
				t.Fatal(err)
			}
			sp, err = openSpool(dir, "workload", 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.close()
			if recs, _ := sp.depth(); recs != int64(tc.wantReplays) {
				t.Fatalf("reopened spool holds %d records, want %d", recs, tc.wantReplays)
			}
			for want := tc.read; want < tc.spooled; {
				recs, n, _, err := sp.take(nil, 256, 1<<20)
				if err != nil || len(recs) == 0 {
					t.Fatalf("replay at %d: %d records, %v", want, len(recs), err)
				}
				for _, r := range recs {
					if got := string(r); got != fmt.Sprintf("rec-%03d", want) {
						t.Fatalf("replayed %q, want rec-%03d", got, want)
					}
					want++
				}
				sp.commit(n, len(recs))
			}
		})
	}
}
