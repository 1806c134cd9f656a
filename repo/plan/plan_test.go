package plan

import (
	"slices"
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
`), "plan.yaml")
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

// Every problem names the plan file, the line and the key, as the
// appliance configuration's do (issue 13 item 5); all are listed.
func TestParseRejects(t *testing.T) {
	for doc, want := range map[string]string{
		"":            "p.yaml: sources: none: give the sources to back up",
		"sources: []": "p.yaml:1: sources: none: give the sources to back up",
		"sources:\n - {name: a, class: git, paths: [/a]}":                                                        "p.yaml:2: sources[0].why: none: say why this source is backed up (scope must be explicit and justified)",
		"sources:\n - {name: a, class: movies, why: x, paths: [/a]}":                                             `p.yaml:2: sources[0].class: "movies" is not one of git, database, config, volume, files`,
		"sources:\n - {name: a, class: git, why: x}":                                                             "p.yaml:2: sources[0].paths: none: give paths, or a command whose output is stored",
		"sources:\n - {name: a, class: git, why: x, paths: [rel]}":                                               `p.yaml:2: sources[0].paths[0]: "rel" is not absolute`,
		"sources:\n - {name: a, class: database, why: x, command: pg_dumpall}":                                   "p.yaml:2: sources[0].file: none: a command needs file: the name its output is stored under",
		"sources:\n - {name: a, class: git, why: x, paths: [/a]}\n - {name: a, class: git, why: y, paths: [/b]}": `p.yaml:3: sources[1].name: "a" is the name of sources[0] too; every source needs its own`,
		"sources:\n - {name: ../x, class: git, why: x, paths: [/a]}":                                             `p.yaml:2: sources[0].name: plan name "../x" starts with a dot`,
		"sources:\n - {name: a, class: git, why: x, paths: [/a], colour: red}":                                   "p.yaml:2: sources[0].colour: unknown key",
		"sources: {a: 1}": "p.yaml:1: sources: cannot unmarshal !!map into []plan.Source",
		"sources:\n  - name: git\n    class: git\n    why: code\n    paths:\n      - /srv/git\n      - srv/other\n  - name: db\n    class: databse\n    why: data\n    command: pg_dumpall\n": "p.yaml:7: sources[0].paths[1]: \"srv/other\" is not absolute\n" +
			"p.yaml:8: sources[1].file: none: a command needs file: the name its output is stored under\n" + // a missing key: the line of its source
			`p.yaml:9: sources[1].class: "databse" is not one of git, database, config, volume, files`,
	} {
		_, err := Parse([]byte(doc), "p.yaml")
		if err == nil || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", doc, err, want)
		}
	}
}
