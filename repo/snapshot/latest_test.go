package snapshot_test

import (
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
)

func TestLatestSkipsFutureDated(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	entry := func(name string, tm time.Time) snapshot.Entry {
		return snapshot.Entry{ID: blob.Hash([]byte(name)), Snapshot: &snapshot.Snapshot{Time: tm}}
	}
	past := entry("past", now.Add(-time.Hour))
	edge := entry("edge", now.Add(snapshot.ClockSkew))
	future := entry("future", time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))
	later := entry("later", now.Add(snapshot.ClockSkew+time.Nanosecond))
	cases := []struct {
		name string
		list []snapshot.Entry
		want int
	}{
		{"empty", nil, -1},
		{"the newest", []snapshot.Entry{past, edge}, 1},
		{"not the future-dated one", []snapshot.Entry{past, edge, later, future}, 1},
		{"only future-dated ones: the newest", []snapshot.Entry{later, future}, 1},
	}
	for _, c := range cases {
		if got := snapshot.Latest(c.list, now); got != c.want {
			t.Errorf("%s: Latest = %d, want %d", c.name, got, c.want)
		}
	}
	got, _, err := snapshot.Find([]snapshot.Entry{past, later, future}, "latest", "", now)
	if err != nil || got.ID != past.ID {
		t.Fatalf("Find latest = %v %v, want the past one", got.ID.Short(), err)
	}
}
