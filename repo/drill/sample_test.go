package drill

import "testing"

// Sampled paths become patterns that match exactly themselves, however
// their names look; repositories match with everything below them.
func TestSelectionMatcher(t *testing.T) {
	s := &selection{
		sample: []string{"/data/odd [name]*?.txt", `/data/back\slash`, "/data/**"},
		whole:  []string{"/srv/git/app.git", "/srv/work/.git"},
	}
	m, err := s.matcher()
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		"/data/odd [name]*?.txt":         true,
		"/data/odd n*?.txt":              false,
		"/data/odd [name]xy.txt":         false,
		`/data/back\slash`:               true,
		"/data/backslash":                false,
		"/data/**":                       true,
		"/data/x":                        false,
		"/srv/git/app.git":               true,
		"/srv/git/app.git/objects/ab/cd": true,
		"/srv/git/other.git/HEAD":        false,
		"/srv/work/.git/HEAD":            true,
		"/srv/work/README":               false,
	} {
		if got, _ := m.Match(p, false); got != want {
			t.Errorf("Match(%q) = %v, want %v", p, got, want)
		}
	}
	if !m.CouldMatchBelow("/srv") || m.CouldMatchBelow("/etc") {
		t.Errorf("CouldMatchBelow wrong")
	}
}

func TestProbeCandidate(t *testing.T) {
	for name, want := range map[string]bool{
		"app.sqlite": true, "app.db": true, "app.DB": true, "app.db-wal": true, "app.sqlite3-journal": true,
		"x.pgdump": true, "toc.dat": true, "dump.sql": false, "README": false, "notes.txt": false,
	} {
		if got := probeCandidate(name, "files"); got != want {
			t.Errorf("probeCandidate(%q) = %v", name, got)
		}
	}
	if !probeCandidate("README", "database") {
		t.Errorf("class database: every file is a candidate")
	}
}
