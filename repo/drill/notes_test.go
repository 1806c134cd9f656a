package drill_test

import (
	"maps"
	"testing"

	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/repotest"
)

// recordsOnly, notesOnly and recorderOnly hide every method of the
// repository but a Records', a Notes' and a Recorder's.
type (
	recordsOnly  struct{ drill.Records }
	notesOnly    struct{ drill.Notes }
	recorderOnly struct{ drill.Recorder }
)

// Save stores and notes a report through drill.Recorder; Marks read
// the index's notes (and, while the index has not noted every report,
// the reports, which they note) through drill.Notes; List and Load read
// the reports through drill.Records. None needs more of the repository.
func TestMarksNeedOnlyNotes(t *testing.T) {
	r := repotest.New(t)
	for _, rep := range reports(12) {
		if _, err := drill.Save(t.Context(), recorderOnly{r}, rep); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.RebuildIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	list, err := drill.List(t.Context(), recordsOnly{r})
	if err != nil || len(list) != 12 {
		t.Fatalf("List: %d reports, %v; want 12", len(list), err)
	}
	if rep, err := drill.Load(t.Context(), recordsOnly{r}, list[0].ID); err != nil || rep.Finished != list[0].Finished || rep.Snapshot != list[0].Snapshot {
		t.Fatalf("Load %s: %+v, %v; want %+v", list[0].ID.Short(), rep, err, list[0].Report)
	}
	marks, err := drill.Marks(t.Context(), notesOnly{r})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := r.DrillsNoted(); !ok || err != nil {
		t.Fatalf("after Marks through drill.Notes, the rebuilt index has not noted every report: %v, %v", ok, err)
	}
	for id, m := range marks {
		m.Newest = drill.Saved{}
		marks[id] = m
	}
	if w := want(list); !maps.Equal(marks, w) {
		t.Fatalf("marks %v, want %v", marks, w)
	}
}
