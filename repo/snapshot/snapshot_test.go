package snapshot

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
)

func sample() *Snapshot {
	parent := blob.Hash([]byte("parent"))
	return &Snapshot{
		Version: Version,
		Time:    time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.FixedZone("CET", 3600)),
		Node:    "lyra", Plan: "git", Host: "lyra.lan",
		Paths:    []string{"/srv/git"},
		Tags:     []string{"daily"},
		Tree:     blob.Hash([]byte("tree")),
		Parent:   &parent,
		Excludes: []Exclude{{Rule: "*.tmp", Count: 3}},
		Summary:  Summary{Files: 10, Dirs: 2, Bytes: 1000, Duration: 1500 * time.Millisecond, Warnings: []string{"x: permission denied"}},
	}
}

func TestRoundTrip(t *testing.T) {
	s := sample()
	enc, id, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if id != blob.Hash(enc) {
		t.Fatal("id is not the hash of the encoding")
	}
	// Canonical: the same record encodes identically, in UTC.
	if !strings.Contains(string(enc), `"time":"2026-11-26T11:00:00.123456789Z"`) {
		t.Fatalf("time not in UTC: %s", enc)
	}
	got, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	enc2, id2, err := Encode(got)
	if err != nil || id2 != id || string(enc2) != string(enc) {
		t.Fatalf("re-encoding differs:\n%s\n%s", enc, enc2)
	}
	if *got.Parent != *s.Parent || got.Summary.Duration != s.Summary.Duration || got.Excludes[0] != s.Excludes[0] {
		t.Fatalf("decoded %+v", got)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _, _ := Encode(sample())
	cases := map[string]struct {
		in   string
		want string
	}{
		"unknown field": {strings.Replace(string(good), `"node"`, `"evil":1,"node"`, 1), `snapshot: decode: json: unknown field "evil": corrupt`},
		"trailing":      {string(good) + "{}", "snapshot: trailing data after the record: corrupt"},
		"version":       {strings.Replace(string(good), `"version":1`, `"version":2`, 1), "snapshot: version 2 is not supported"},
		"bad node":      {strings.Replace(string(good), `"node":"lyra"`, `"node":"../x"`, 1), "snapshot: node name \"../x\" starts with a dot"},
		"no tree":       {strings.Replace(string(good), `"tree":"`+blob.Hash([]byte("tree")).String()+`"`, `"tree":"`+strings.Repeat("0", 64)+`"`, 1), "snapshot: root tree is not set"},
		"bad id":        {strings.Replace(string(good), `"tree":"`, `"tree":"zz`, 1), ""},
		"not json":      {"\x00garbage", ""},
	}
	for name, c := range cases {
		_, err := Decode([]byte(c.in))
		if err == nil || !errors.Is(err, blob.ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
			continue
		}
		if c.want != "" && err.Error() != c.want {
			t.Errorf("%s: err = %q\nwant %q", name, err, c.want)
		}
	}
	big := make([]byte, MaxSize+1)
	if _, err := Decode(big); err == nil || err.Error() != "snapshot: record of 1048577 bytes exceeds 1048576: corrupt" {
		t.Errorf("big: %v", err)
	}
}

func TestCheckName(t *testing.T) {
	for name, want := range map[string]string{
		"lyra":                  "",
		"db-01.lan":             "",
		"":                      "snapshot: node name is empty",
		".hidden":               `snapshot: node name ".hidden" starts with a dot`,
		"a/b":                   `snapshot: node name "a/b" has the character '/'; use letters, digits, '.', '_' and '-'`,
		strings.Repeat("x", 65): `snapshot: node name "` + strings.Repeat("x", 65) + `" is longer than 64 characters`,
	} {
		err := CheckName("node", name)
		if got := errString(err); got != want {
			t.Errorf("CheckName(%q) = %q, want %q", name, got, want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestFilterAndSort(t *testing.T) {
	a, b := sample(), sample()
	b.Node, b.Tags, b.Time = "proxima", nil, a.Time.Add(-time.Hour)
	list := []Entry{{ID: blob.Hash([]byte("a")), Snapshot: a}, {ID: blob.Hash([]byte("b")), Snapshot: b}}
	Sort(list)
	if list[0].Node != "proxima" {
		t.Fatal("not sorted by time")
	}
	if !(Filter{Node: "lyra", Tags: []string{"daily"}, Path: "/srv/git/"}).Match(a) {
		t.Fatal("filter should match")
	}
	if (Filter{Tags: []string{"daily"}}).Match(b) || (Filter{Plan: "other"}).Match(a) {
		t.Fatal("filter should not match")
	}
}

func FuzzDecode(f *testing.F) {
	good, _, _ := Encode(sample())
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(data)
		if err != nil {
			if !errors.Is(err, blob.ErrCorrupt) {
				t.Fatalf("error is not ErrCorrupt: %v", err)
			}
			return
		}
		enc, _, err := Encode(s)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if _, err := Decode(enc); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
	})
}
