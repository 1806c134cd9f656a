package check_test

import (
	"testing"

	"github.com/cairnbackup/cairn/repo/check"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// Progress starts at zero, counts packs and bytes read, and ends at the
// totals.
func TestReadProgress(t *testing.T) {
	f := setup(t)
	r := repotest.Open(t, f.dir)
	var got []check.ReadProgress
	rep, err := check.Run(t.Context(), r, check.Options{ReadData: true, Progress: func(p check.ReadProgress) { got = append(got, p) }})
	if err != nil {
		t.Fatal(err)
	}
	last := check.ReadProgress{Packs: rep.PacksRead, TotalPacks: rep.PacksRead, Bytes: rep.BytesRead, TotalBytes: rep.BytesRead}
	first := check.ReadProgress{TotalPacks: rep.PacksRead, TotalBytes: rep.BytesRead}
	if len(got) != rep.PacksRead+1 || rep.PacksRead == 0 || got[0] != first || got[len(got)-1] != last {
		t.Fatalf("progress %+v, want %d calls from %+v to %+v", got, rep.PacksRead+1, first, last)
	}
	for i, p := range got {
		if p.Packs != i || p.Bytes > p.TotalBytes || (i > 0 && p.Bytes <= got[i-1].Bytes) {
			t.Fatalf("progress %+v", got)
		}
	}
}
