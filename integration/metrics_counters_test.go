package integration

import (
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/apptest"
)

// counterLines returns the lines of a scrape that belong to the
// appliance's counters and build info, in the order served.
func counterLines(scraped string) string {
	var b strings.Builder
	for _, line := range strings.Split(scraped, "\n") {
		for _, p := range []string{"cairn_build_info", "cairn_job_failures_total", "cairn_pushes_total", "cairn_received_bytes_total",
			"cairn_sessions_refused_total", "cairn_ssh_auth_failures_total", "cairn_ssh_connections_refused_total"} {
			if strings.HasPrefix(line, p+"{") || strings.HasPrefix(line, p+" ") {
				b.WriteString(line + "\n")
			}
		}
	}
	return b.String()
}

// The metrics endpoint counts pushes by node and result, the bytes nodes
// send, refused sessions, failed logins and broken handshakes, and
// failed job runs; every series the configuration implies is there at
// zero before anything happened. cairn_build_info names the build; the
// Go and process collectors are served.
func TestMetricsCounters(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	lyra, vega := newNode(t, "lyra", "push"), newNode(t, "vega", "push")
	metricsPort := apptest.FreePort(t)
	// The drill's scratch is a file: every drill fails.
	scratch := filepath.Join(e.dir, "password")
	a := e.serveWith(fmt.Sprintf(`jobs:
  drill: {schedule: "0 4 * * *", scratch: %s}
  verify: {schedule: "@daily", cycle: 30d}
metrics: 127.0.0.1:%d
`, scratch, metricsPort), lyra, vega)

	buildInfo := `cairn_build_info{commit="unknown",goversion="` + runtime.Version() + `",version="dev"} 1` + "\n"
	want := buildInfo + `cairn_job_failures_total{job="drill"} 0
cairn_job_failures_total{job="verify"} 0
cairn_pushes_total{node="lyra",result="failed"} 0
cairn_pushes_total{node="lyra",result="ok"} 0
cairn_pushes_total{node="vega",result="failed"} 0
cairn_pushes_total{node="vega",result="ok"} 0
cairn_received_bytes_total{node="lyra"} 0
cairn_received_bytes_total{node="vega"} 0
cairn_sessions_refused_total{reason="command"} 0
cairn_sessions_refused_total{reason="limits"} 0
cairn_sessions_refused_total{reason="revoked"} 0
cairn_sessions_refused_total{reason="unknown_node"} 0
cairn_ssh_auth_failures_total 0
cairn_ssh_connections_refused_total{reason="handshake"} 0
cairn_ssh_connections_refused_total{reason="limits"} 0
`
	scraped := scrape(t, metricsPort)
	if got := counterLines(scraped); got != want {
		t.Fatalf("counters before anything happened:\n%s\nwant:\n%s", got, want)
	}
	for _, series := range []string{"go_goroutines ", "go_memstats_heap_alloc_bytes ", "process_resident_memory_bytes ", "process_start_time_seconds ", "process_open_fds "} {
		if !strings.Contains(scraped, "\n"+series) {
			t.Errorf("the scrape lacks %s", series)
		}
	}

	// lyra: a push that succeeds, a tar push that fails, a command it
	// may not run. vega: a --stdin push of exactly 100000 bytes.
	src := filepath.Join(e.dir, "src")
	writeSource(t, src)
	if r := a.push(lyra, nil, src); r.code != 0 {
		t.Fatalf("push: %s", r.stderr)
	}
	garbage := strings.Repeat("this is not a tar archive\n", 100)
	if r := runSSH(t, strings.NewReader(garbage), append(a.SSHArgs(lyra), "push", "--tar", "--name", "x")...); r.code != 1 {
		t.Fatalf("tar push of garbage: %d %q", r.code, r.stderr)
	}
	if r := runSSH(t, nil, append(a.SSHArgs(lyra), "forget", "--prune")...); r.code != 2 {
		t.Fatalf("forget: %d %q", r.code, r.stderr)
	}
	dump := strings.Repeat("0123456789", 10000)
	if r := runSSH(t, strings.NewReader(dump), append(a.SSHArgs(vega), "push", "--stdin", "--name", "db.sql")...); r.code != 0 {
		t.Fatalf("stdin push: %d %q", r.code, r.stderr)
	}
	// Two failed logins: an unknown key, and lyra's key as vega. The
	// appliance counts them before it logs them.
	stranger := newNode(t, "stranger", "push")
	if r := a.push(stranger, nil, src); r.code != 1 {
		t.Fatalf("unknown key: %d %q", r.code, r.stderr)
	}
	a.WaitFor("unknown key")
	if r := a.push(&node{Name: "vega", Key: lyra.Key}, nil, src); r.code != 1 {
		t.Fatalf("impostor: %d %q", r.code, r.stderr)
	}
	a.WaitFor(`key of node lyra used as user \"vega\"`)
	// Something that does not speak SSH: a broken handshake.
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.Port))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
	c.Read(make([]byte, 256))
	c.Close()
	a.WaitFor("ssh connection refused")
	// A job that fails.
	if r := e.run(nil, "jobs", "run", "drill"); r.code != 1 {
		t.Fatalf("jobs run drill: exit %d %q %q", r.code, r.stdout, r.stderr)
	}

	got := counterLines(scrape(t, metricsPort))
	lyraBytes := ""
	for _, line := range strings.Split(got, "\n") {
		if v, ok := strings.CutPrefix(line, `cairn_received_bytes_total{node="lyra"} `); ok {
			lyraBytes = v
		}
	}
	if n, err := strconv.ParseFloat(lyraBytes, 64); err != nil || n <= float64(len(garbage)) {
		t.Errorf("lyra's bytes received %q, want more than the %d bytes of its failed tar push", lyraBytes, len(garbage))
	}
	want = buildInfo + `cairn_job_failures_total{job="drill"} 1
cairn_job_failures_total{job="verify"} 0
cairn_pushes_total{node="lyra",result="failed"} 1
cairn_pushes_total{node="lyra",result="ok"} 1
cairn_pushes_total{node="vega",result="failed"} 0
cairn_pushes_total{node="vega",result="ok"} 1
cairn_received_bytes_total{node="lyra"} ` + lyraBytes + `
cairn_received_bytes_total{node="vega"} 100000
cairn_sessions_refused_total{reason="command"} 1
cairn_sessions_refused_total{reason="limits"} 0
cairn_sessions_refused_total{reason="revoked"} 0
cairn_sessions_refused_total{reason="unknown_node"} 0
cairn_ssh_auth_failures_total 2
cairn_ssh_connections_refused_total{reason="handshake"} 1
cairn_ssh_connections_refused_total{reason="limits"} 0
`
	if got != want {
		t.Fatalf("counters:\n%s\nwant:\n%s", got, want)
	}

	// A node added by a reload has its series at once.
	deneb := newNode(t, "deneb", "push")
	e.writeConfigExtra(a.Port, fmt.Sprintf("metrics: 127.0.0.1:%d\n", metricsPort), lyra, vega, deneb)
	a.Cmd.Process.Signal(syscall.SIGHUP)
	a.WaitFor("configuration reloaded")
	got = counterLines(scrape(t, metricsPort))
	for _, line := range []string{`cairn_pushes_total{node="deneb",result="failed"} 0`, `cairn_pushes_total{node="deneb",result="ok"} 0`, `cairn_received_bytes_total{node="deneb"} 0`} {
		if !strings.Contains(got, line+"\n") {
			t.Errorf("after the reload the counters lack %s:\n%s", line, got)
		}
	}
}
