package torture

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Mistyped configurations (issue 13 item 5): an operator's typo must
// change nothing and name itself, wherever it is met. Each mistake is
// sent to a running appliance by SIGHUP (the reload must be refused
// whole, naming FILE:LINE: KEY, and lyra must still push under the old
// configuration), then all of them at once, which cairn config check
// must list every one of, and cairn serve must refuse before it serves.
// Invalid values were silently replaced before (sessions: -3,
// max_batch: 1000000) or passed until used (metrics: 19472).
func TestMistypedConfiguration(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	l := &lifecycle{t: t, e: e, lyra: newNode(t, "lyra", "push, read"), acked: map[string]string{}}
	l.src = filepath.Join(e.dir, "lyra-src")
	newSource(t, l.src, seed^0x13c, smallSpec, 0)
	l.a = e.serve(nil, "", l.lyra)
	if err := l.pushLyra(); err != nil {
		t.Fatal(err)
	}
	nova := newNode(t, "nova", "push, write")
	config := e.repo + ".yaml"
	mistakes := []struct {
		extra string
		nodes []*node
		want  string // KEY: message, as the log quotes it
	}{
		{"limits:\n  sessions: -3\n", nil, "limits.sessions: -3 is negative"},
		{"limits:\n  max_batch: 1000000\n", nil, "limits.max_batch: 1000000 is above the most allowed, 65536"},
		{"limits:\n  idle_timeout: soon\n", nil, "limits.idle_timeout: cannot unmarshal !!str `soon` into time.Duration"},
		{"metrics: 19472\n", nil, "metrics: address 19472: missing port in address"},
		{"jobs:\n  drill: {schedule: \"@dialy\"}\n", nil, `jobs.drill.schedule: \"@dialy\": unrecognized descriptor: @dialy`},
		{"expect: {default: 1w}\n", nil, `expect.default: span \"1w\": unknown unit 'w'`},
		{"retention:\n  timezone: Europe/Berln\n", nil, "retention.timezone: unknown time zone Europe/Berln"},
		{"retention:\n  policies:\n    default: {keep_drilled: 2}\n", nil, "retention.policies.default: keeps nothing"},
		{"colour: red\n", nil, "colour: unknown key"},
		{"", []*node{nova}, `nodes.nova.permissions[1]: unknown permission \"write\"`},
	}
	runs, detected := 0, 0
	var notes, all []string
	for _, m := range mistakes {
		runs++
		line := l.reload(m.extra, append([]*node{l.lyra}, m.nodes...)...)
		re := regexp.MustCompile(regexp.QuoteMeta(config+":") + `\d+: ` + regexp.QuoteMeta(m.want))
		pushErr := l.pushLyra()
		if strings.Contains(line, `msg="reloading the configuration failed; the old one stays"`) && re.MatchString(line) && pushErr == nil {
			detected++
		} else {
			t.Errorf("reload with %q: %s\nwant %s; lyra's push after it: %v", m.extra, line, re, pushErr)
		}
		all = append(all, m.want)
	}
	notes = append(notes, fmt.Sprintf("%d reloads, each with one mistake: refused whole, FILE:LINE: KEY named, lyra kept pushing", len(mistakes)))

	// All at once: config check lists every one; serve refuses them.
	runs++
	e.writeConfig(l.a.Port, "limits:\n  sessions: -3\n  max_batch: 1000000\n  idle_timeout: soon\nmetrics: 19472\n"+
		"jobs:\n  drill: {schedule: \"@dialy\"}\nexpect: {default: 1w}\n"+
		"retention:\n  timezone: Europe/Berln\n  policies:\n    default: {keep_drilled: 2}\ncolour: red\n", l.lyra, nova)
	r := l.run("config", "check")
	listed := 0
	for _, w := range all {
		if regexp.MustCompile(regexp.QuoteMeta(config+":") + `\d+: ` + regexp.QuoteMeta(strings.ReplaceAll(w, `\"`, `"`))).MatchString(r.stdout) {
			listed++
		}
	}
	if r.code == 1 && listed == len(all) && r.stderr == fmt.Sprintf("cairn: %s: %d problems\n", config, len(all)) {
		detected++
	} else {
		t.Errorf("config check of every mistake at once: %d of %d listed\n%s\nfile:\n%s", listed, len(all), r, mustRead(t, config))
	}
	l.a.Stop()
	runs++
	r = l.run("serve")
	if r.code == 1 && !strings.Contains(r.stderr, "msg=serving") && strings.Count(r.stderr, "cairn: "+config+":") == len(all) {
		detected++
	} else {
		t.Errorf("serve with every mistake: %s", r)
	}
	notes = append(notes, fmt.Sprintf("all %d at once: config check listed each (exit 1), serve refused before serving", len(all)))
	record("mistyped configuration (reload, config check, serve)", runs, detected, l.lost(), strings.Join(notes, "; "))
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
