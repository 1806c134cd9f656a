package plan

import (
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo/filter"
)

// The disposable excludes (*.o, node_modules/, *.tmp, …) applied to every
// class: a files source lost crt1.o and the other C start-up files, and
// drills and status said all was well. They now apply to git sources
// (build output in working trees) and to sources that ask for them;
// CACHEDIR.TAG caches are left out of every path source.
func TestDisposableOnlyWhereSafe(t *testing.T) {
	p, err := Parse([]byte(`
sources:
  - {name: libc, class: files, why: the C runtime we ship, paths: [/opt/sdk]}
  - {name: vol, class: volume, why: container state, paths: [/var/lib/docker/volumes]}
  - {name: etc, class: config, why: host configuration, paths: [/etc]}
  - {name: pgdata, class: database, why: the cluster files, paths: [/var/lib/postgresql]}
  - {name: code, class: git, why: our code, paths: [/srv/git]}
  - {name: home, class: files, why: home directories, paths: [/home], exclude_disposable: true, exclude: ["*.iso"]}
  - {name: raw, class: git, why: build trees we keep, paths: [/srv/build], keep_disposable: true}
  - {name: dump, class: database, why: all data, command: pg_dumpall, file: all.sql}
`), "plan.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name          string
		disposable    bool
		own           []string
		excludeCaches bool
	}{
		{"libc", false, nil, true},
		{"vol", false, nil, true},
		{"etc", false, nil, true},
		{"pgdata", false, nil, true},
		{"code", true, nil, true},
		{"home", true, []string{"*.iso"}, true},
		{"raw", false, nil, false},
		{"dump", false, nil, false},
	} {
		i := slices.IndexFunc(p.Sources, func(s Source) bool { return s.Name == c.name })
		s := p.Sources[i]
		want := slices.Clone(c.own)
		if c.disposable {
			want = append(want, Disposable...)
		}
		if got := s.Excludes(); !slices.Equal(got, want) {
			t.Errorf("%s (%s): excludes %q, want %q", c.name, s.Class, got, want)
		}
		if got := s.ExcludeCaches(); got != c.excludeCaches {
			t.Errorf("%s: exclude caches %v, want %v", c.name, got, c.excludeCaches)
		}
		if sc := s.Scope("/etc/cairn/plan.yaml"); !slices.Equal(sc.Excludes, want) || sc.ExcludeCaches != c.excludeCaches {
			t.Errorf("%s: scope %+v", c.name, sc)
		}
	}
	// Each rule says where it came from, and a disposable one says so.
	home := p.Sources[slices.IndexFunc(p.Sources, func(s Source) bool { return s.Name == "home" })]
	rules := home.Rules("/etc/cairn/plan.yaml")
	if len(rules) != 1+len(Disposable) {
		t.Fatalf("%d rules", len(rules))
	}
	if got := rules[0].String(); got != `plan /etc/cairn/plan.yaml source home "*.iso"` {
		t.Errorf("own rule %s", got)
	}
	if got := rules[1+slices.Index(Disposable, "*.o")].String(); got != `plan /etc/cairn/plan.yaml source home disposable "*.o"` {
		t.Errorf("disposable rule %s", got)
	}
	if _, err := filter.New(rules); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(Disposable, "*.o") || !slices.Contains(Disposable, "node_modules/") {
		t.Fatalf("disposable %q", Disposable)
	}
}

func TestDisposableRejects(t *testing.T) {
	_, err := Parse([]byte("sources:\n - {name: a, class: files, why: x, paths: [/a], keep_disposable: true, exclude_disposable: true}\n"), "p.yaml")
	if want := `p.yaml:2: sources[0].exclude_disposable: contradicts keep_disposable: give one`; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	_, err = Parse([]byte("sources:\n - {name: a, class: database, why: x, command: pg_dumpall, file: a.sql, exclude_disposable: true}\n"), "p.yaml")
	if want := `p.yaml:2: sources[0].exclude_disposable: applies to paths; a command source has none`; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}
