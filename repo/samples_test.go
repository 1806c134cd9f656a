package repo_test

import (
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// The index keeps one size sample per UTC day (the last one) and only
// the newest SizeSampleDays days.
func TestSizeSamplesOnePerDayBounded(t *testing.T) {
	r := repotest.New(t)
	day0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := range repo.SizeSampleDays + 5 {
		for h := range 2 { // two samples a day: the later one stays
			at := day0.Add(time.Duration(d)*24*time.Hour + time.Duration(1+h*20)*time.Hour)
			if err := r.PutSizeSample(repo.SizeSample{Time: at, StoredBytes: uint64(d*10 + h), Packs: 1, Bytes: 2, Snapshots: 3}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []repo.SizeSample
	if err := r.SizeSamples(func(s repo.SizeSample) error { got = append(got, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != repo.SizeSampleDays {
		t.Fatalf("%d samples, want %d", len(got), repo.SizeSampleDays)
	}
	first, last := got[0], got[len(got)-1]
	wantFirst := repo.SizeSample{Time: day0.Add(5*24*time.Hour + 21*time.Hour), StoredBytes: 51, Packs: 1, Bytes: 2, Snapshots: 3}
	if !first.Time.Equal(wantFirst.Time) || first.StoredBytes != wantFirst.StoredBytes || first.Packs != 1 || first.Bytes != 2 || first.Snapshots != 3 {
		t.Errorf("first %+v, want %+v", first, wantFirst)
	}
	if last.StoredBytes != uint64((repo.SizeSampleDays+4)*10+1) {
		t.Errorf("last %+v", last)
	}
}
