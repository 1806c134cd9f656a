package plan

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	p, err := Parse([]byte(`
sources:
  - name: git
    class: git
    why: our code
    paths: [/srv/git]
  - name: postgres
    class: database
    why: all application data
    command: pg_dumpall
    file: postgres.sql
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Sources) != 2 || p.Sources[1].File != "postgres.sql" {
		t.Fatalf("%+v", p)
	}
	if ex := p.Sources[0].Excludes(); !slices.Contains(ex, "node_modules/") {
		t.Fatalf("disposable data not excluded by default: %v", ex)
	}
	if ex := p.Sources[1].Excludes(); len(ex) != 0 {
		t.Fatalf("a command source gets path excludes: %v", ex)
	}
	sc := p.Sources[0].Scope("/etc/cairn/plan.yaml")
	if sc.Class != "git" || sc.Why != "our code" || !sc.ExcludeCaches || sc.PlanFile != "/etc/cairn/plan.yaml" {
		t.Fatalf("scope %+v", sc)
	}
}

func TestParseRejects(t *testing.T) {
	for doc, want := range map[string]string{
		"":            "no sources",
		"sources: []": "no sources",
		"sources:\n - {name: a, class: git, paths: [/a]}":                                                        `source "a": no why: say why this source is backed up (scope must be explicit and justified)`,
		"sources:\n - {name: a, class: movies, why: x, paths: [/a]}":                                             `source "a": class "movies" is not one of git, database, config, volume, files`,
		"sources:\n - {name: a, class: git, why: x}":                                                             `source "a": give paths, or a command whose output is stored`,
		"sources:\n - {name: a, class: git, why: x, paths: [rel]}":                                               `source "a": path "rel" is not absolute`,
		"sources:\n - {name: a, class: database, why: x, command: pg_dumpall}":                                   `source "a": a command needs file: the name its output is stored under`,
		"sources:\n - {name: a, class: git, why: x, paths: [/a]}\n - {name: a, class: git, why: y, paths: [/b]}": `source "a": the name is used twice`,
		"sources:\n - {name: ../x, class: git, why: x, paths: [/a]}":                                             `source "../x": snapshot: plan name "../x" starts with a dot`,
		"sources:\n - {name: a, class: git, why: x, paths: [/a], colour: red}":                                   "field colour not found",
	} {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", doc, err, want)
		}
	}
}
