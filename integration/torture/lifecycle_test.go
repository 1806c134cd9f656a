package torture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/apptest"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/wire"
)

// The appliance staying up: a flood of connections that never log in,
// against the limits on unauthenticated connections and against a file
// descriptor limit, and keys revoked and configurations reloaded (good
// and bad) while nodes are connected. After each, a node pushes, an
// operator command answers, and everything acknowledged restores.

// lifecycle is one appliance with the victim lyra, who keeps a copy of
// every source it pushed.
type lifecycle struct {
	t     *testing.T
	e     *env
	a     *appliance
	lyra  *node
	src   string
	acked map[string]string // lyra's snapshots → copies of their source
}

// run runs cairn like env.run, but kills it after two minutes: a broken
// appliance can leave a client waiting for ever (the test then fails
// instead of hanging).
func (l *lifecycle) run(args ...string) result {
	l.t.Helper()
	cmd := cairnCommand(args...)
	cmd.Env = append(cleanEnviron(), l.e.vars...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	err := cmd.Run()
	if !timer.Stop() {
		l.t.Errorf("cairn %s did not finish within two minutes", strings.Join(args, " "))
	}
	return finish(l.t, cmd, err, args, &out, &errb)
}

// ok is run that must exit 0.
func (l *lifecycle) ok(args ...string) string {
	l.t.Helper()
	r := l.run(args...)
	if r.code != 0 {
		l.t.Fatalf("%s", r)
	}
	return r.stdout
}

// pushLyra pushes lyra's source (changed a little each time) and keeps a
// copy of it.
func (l *lifecycle) pushLyra() error {
	l.t.Helper()
	if err := os.WriteFile(filepath.Join(l.src, "round.txt"), fmt.Appendf(nil, "round %d\n", len(l.acked)), 0o644); err != nil {
		l.t.Fatal(err)
	}
	cp := filepath.Join(l.e.dir, fmt.Sprintf("lyra-copy%d", len(l.acked)))
	if out, err := runCmd("cp", "-a", l.src, cp); err != nil {
		l.t.Fatalf("cp: %v %s", err, out)
	}
	r := l.run("push", fmt.Sprintf("ssh://lyra@127.0.0.1:%d", l.a.Port), "-i", l.lyra.Key.PrivatePath, "--host-key", l.a.HostKey, "--json", "--plan", "files", l.src)
	s, ok := summaryOf(r.stdout)
	if r.code != 0 || !ok {
		return fmt.Errorf("lyra's push: %s", r)
	}
	l.acked[s.Snapshot] = cp
	return nil
}

// lost restores every snapshot lyra pushed and returns how many differ
// from their copies.
func (l *lifecycle) lost() int {
	l.t.Helper()
	n := 0
	for id, cp := range l.acked {
		if d := l.e.restoreCompare(id, l.src, cp); len(d) > 0 {
			l.t.Errorf("lyra's snapshot: %s", strings.Join(d, "\n"))
			n++
		}
	}
	return n
}

// reload writes the configuration with limits (and nodes) and sends
// SIGHUP; it returns the log line that answered.
func (l *lifecycle) reload(limits string, nodes ...*node) string {
	l.t.Helper()
	l.e.writeConfig(l.a.Port, limits, nodes...)
	l.a.Cmd.Process.Signal(syscall.SIGHUP)
	for {
		line := l.a.WaitFor("configuration")
		if strings.Contains(line, "configuration reloaded") || strings.Contains(line, "reloading the configuration failed") {
			return line
		}
	}
}

// waitLines consumes the appliance's log until, for every group of subs,
// a line containing all of them has gone by (in any order).
func (a *appliance) waitLines(groups ...[]string) {
	a.e.t.Helper()
	left := groups
	timeout := time.After(time.Minute)
	for len(left) > 0 {
		select {
		case line, ok := <-a.Lines():
			if !ok {
				a.e.t.Fatalf("the appliance exited:\n%s", apptest.Tail(a.Log(), 40))
			}
			for i, g := range left {
				all := true
				for _, s := range g {
					all = all && strings.Contains(line, s)
				}
				if all {
					left = append(left[:i:i], left[i+1:]...)
					break
				}
			}
		case <-timeout:
			a.e.t.Fatalf("no log lines %q:\n%s", left, apptest.Tail(a.Log(), 40))
		}
	}
}

// flood opens n TCP connections to the appliance's SSH port that never
// log in. They are closed by release, and at the end of the test.
type flood struct {
	conns []net.Conn
}

func (a *appliance) flood(n int) *flood {
	t := a.e.t
	t.Helper()
	f := &flood{}
	t.Cleanup(f.release)
	for range n {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.Port))
		if err != nil {
			t.Fatalf("connection %d of the flood: %v", len(f.conns)+1, err)
		}
		f.conns = append(f.conns, c)
	}
	return f
}

// greeted reads, on every connection at once, the first line the
// appliance sends: it counts the connections it admitted (they get its
// SSH banner) and those it closed at once. Those that got neither within
// a minute are other.
func (f *flood) greeted() (admitted, closed, other int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Minute)
	for _, c := range f.conns {
		wg.Go(func() {
			c.SetReadDeadline(deadline)
			line, err := bufio.NewReader(c).ReadString('\n')
			mu.Lock()
			defer mu.Unlock()
			switch {
			case line == "SSH-2.0-cairn\r\n":
				admitted++
			case line == "" && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
				closed++
			default:
				other++
			}
		})
	}
	wg.Wait()
	return admitted, closed, other
}

func (f *flood) release() {
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// floodLimits are the limits of the flood test: the defaults for
// unauthenticated connections unless given, and a handshake timeout long
// enough that only the test ends the flood.
func floodLimits(total, perAddress int) string {
	s := "limits:\n  idle_timeout: 1m\n  handshake_timeout: 10m\n"
	if total > 0 {
		s += fmt.Sprintf("  unauthenticated: %d\n  unauthenticated_per_address: %d\n", total, perAddress)
	}
	return s
}

// TestConnectionFlood holds 250 connections that never log in against
// an appliance limited to 200 open files. With the default limits on
// unauthenticated connections, 10 (the per-address limit) are admitted
// and the rest closed at once, while operator commands keep answering.
// With those limits raised past the file limit, the flood exhausts the
// appliance's file descriptors: accepting fails (EMFILE), which used to
// end both accept loops for good, with nothing logged. Now the appliance
// retries, logs it, and once the flood is released the operator command
// that waited and a node's push go through.
func TestConnectionFlood(t *testing.T) {
	const n, files = 250, 200
	e := newEnv(t)
	e.initRepo()
	e.files = files
	l := &lifecycle{t: t, e: e, lyra: newNode(t, "lyra", "push, read"), acked: map[string]string{}}
	l.src = filepath.Join(e.dir, "lyra-src")
	newSource(t, l.src, seed^0xf1, smallSpec, 0)
	l.a = e.serve(nil, floodLimits(0, 0), l.lyra)
	if err := l.pushLyra(); err != nil {
		t.Fatal(err)
	}
	listing := l.ok("snapshots", "--json")

	// The limits hold the flood off.
	f := l.a.flood(n)
	admitted, closed, other := f.greeted()
	if admitted != 10 || closed != n-10 || other != 0 {
		t.Errorf("%d connections: %d admitted, %d closed at once, %d neither; want 10, %d, 0", n, admitted, closed, other, n-10)
	}
	l.a.waitLines([]string{`msg="ssh connection refused"`, "limits.unauthenticated_per_address"})
	if got := l.ok("snapshots", "--json"); got != listing {
		t.Errorf("snapshots during the flood:\n%s\nwant\n%s", got, listing)
	}
	f.release()
	limited := l.a.logCount(`msg="ssh connection refused"`, "limits.unauthenticated_per_address") > 0
	// Each admitted connection frees its place once the appliance has
	// seen it close.
	var gone [][]string
	for range admitted {
		gone = append(gone, []string{`msg="ssh connection refused"`, "EOF"})
	}
	l.a.waitLines(gone...)
	if err := l.pushLyra(); err != nil {
		t.Errorf("after the first flood: %v", err)
	}
	listing = l.ok("snapshots", "--json")
	note := fmt.Sprintf("%d connections at the default limits: %d admitted, %d closed at once, operator answered during the flood", n, admitted, closed)

	// Past the file descriptor limit.
	if line := l.reload(floodLimits(1000, 1000), l.lyra); !strings.Contains(line, "configuration reloaded") {
		t.Fatalf("reload: %s", line)
	}
	f = l.a.flood(n)
	l.a.waitLines([]string{`msg="accept failed: retrying" listener=ssh`, "too many open files"})
	// An operator command while no file descriptor is free: it waits
	// in the socket's backlog.
	cmd := cairnCommand("snapshots", "--json")
	cmd.Env = append(cleanEnviron(), e.vars...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	l.a.waitLines([]string{`msg="accept failed: retrying" listener=socket`, "too many open files"})
	f.release()
	select {
	case err := <-waited:
		if err != nil || out.String() != listing {
			t.Errorf("the operator command that waited through the flood: %v\nstdout %s\nstderr %s", err, out.String(), errb.String())
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-waited
		t.Errorf("the operator command did not answer within two minutes of the flood's end")
	}
	l.a.waitLines([]string{`msg="accepting again" listener=ssh`}, []string{`msg="accepting again" listener=socket`})
	if err := l.pushLyra(); err != nil {
		t.Errorf("after the second flood: %v", err)
	}
	accepts := l.a.logCount(`msg="accept failed: retrying"`)
	exhausted := accepts > 0 && l.a.logCount(`msg="accepting again"`) >= 2
	note += fmt.Sprintf("; %d connections against %d open files with the limits raised: accepting failed (EMFILE, %d lines logged) and resumed, the operator command that waited and lyra's push went through", n, files, accepts)

	if l.a.Dead() {
		t.Fatalf("the appliance died:\n%s", apptest.Tail(l.a.Log(), 30))
	}
	lost := l.lost()
	detected := 0
	for _, ok := range []bool{limited, exhausted} {
		if ok {
			detected++
		}
	}
	record("connection flood", 2, detected, lost, note)
}

// jobPlan is the running appliance's job list (name, schedule and next
// time), from status --json.
func (l *lifecycle) jobPlan() []string {
	l.t.Helper()
	r := l.run("status", "--json")
	var st struct {
		Jobs []struct {
			Name, Schedule string
			Next           time.Time
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		l.t.Fatalf("status --json: %v: %s", err, r)
	}
	var out []string
	for _, j := range st.Jobs {
		out = append(out, fmt.Sprintf("%s %q next %s", j.Name, j.Schedule, j.Next.Format(time.RFC3339)))
	}
	return out
}

// TestRevocationAndReload attacks through reloads. A node whose key is
// replaced while it holds a connection with a wire session and a tar
// stream running: its next request and read end them, its connection
// gets no new channel. A reload that is wrong in one place (a cron
// schedule) and would add a node and restore the revoked key: nothing of
// it applies and the jobs keep their plan. A node whose push permission
// is taken away mid-session: its next blob is refused. After each, lyra
// pushes and everything acknowledged restores.
func TestRevocationAndReload(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	l := &lifecycle{t: t, e: e, lyra: newNode(t, "lyra", "push, read"), acked: map[string]string{}}
	l.src = filepath.Join(e.dir, "lyra-src")
	newSource(t, l.src, seed^0x7e, smallSpec, 0)
	mallory, vega := newNode(t, "mallory", "push"), newNode(t, "vega", "push, read")
	extra := "limits:\n  idle_timeout: 1m\njobs:\n  verify: {schedule: \"@daily\"}\n  staleness: {schedule: \"@hourly\"}\n"
	l.a = e.serve(nil, extra, l.lyra, mallory, vega)
	if err := l.pushLyra(); err != nil {
		t.Fatal(err)
	}
	var notes []string
	detected := 0

	// 1. mallory's key is replaced while it is connected.
	c, err := l.a.Dial(mallory)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ws, err := openOn(c, "cairn-wire")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws.hello("mallory"); err != nil {
		t.Fatal(err)
	}
	st, err := openOn(c, "push --tar --name loot")
	if err != nil {
		t.Fatal(err)
	}
	tarData, err := runCmd("tar", "-C", l.src, "-c", ".")
	if err != nil {
		t.Fatal(err)
	}
	st.in.Write(tarData[:len(tarData)/2])
	l.a.WaitFor(`msg="node session started" node=mallory command="push --tar --name loot"`)
	oldKey := mallory.Key
	mallory.Key = newNode(t, "mallory2", "push").Key
	if line := l.reload(extra, l.lyra, mallory, vega); !strings.Contains(line, "configuration reloaded") {
		t.Fatalf("reload: %s", line)
	}
	_, chErr := openOn(c, "cairn-wire")
	ws.frame(wire.TypeHaveBlobs, (&wire.HaveBlobs{Req: 1, Handles: []blob.Handle{{ID: blob.Hash([]byte("loot")), Type: blob.Data}}}).Append(nil))
	e1, _ := ws.refusal(30 * time.Second)
	st1, _ := ws.exit(30 * time.Second)
	st.in.Write(tarData[len(tarData)/2:])
	st.in.Close()
	st2, _ := st.exit(30 * time.Second)
	revoked := l.a.logCount(`msg="ssh connection revoked" node=mallory`) == 1 && chErr != nil && strings.Contains(chErr.Error(), "administratively prohibited") &&
		e1 != nil && e1.Code == wire.CodePermissionDenied && strings.HasPrefix(e1.Message, "the key SHA256:") && strings.HasSuffix(e1.Message, " of node mallory was revoked") && st1 == 1 &&
		st2 == 1 && strings.HasPrefix(st.Stderr(), "cairn: the key SHA256:") &&
		strings.TrimSpace(l.ok("snapshots", "--json", "--node", "mallory")) == "[]"
	if !revoked {
		t.Errorf("revoked key: new channel %v; wire session %v exit %d; tar stream exit %d stderr %q", chErr, e1, st1, st2, st.Stderr())
	} else {
		detected++
	}
	if err := l.pushLyra(); err != nil {
		t.Errorf("after the revocation: %v", err)
	}
	notes = append(notes, "key replaced under an open connection: new channel refused, wire session ended at its next request, tar stream at its next read, nothing saved")

	// 2. A reload that is wrong in one place changes nothing.
	plan := l.jobPlan()
	nova := newNode(t, "nova", "push")
	mallory.Key, oldKey = oldKey, mallory.Key
	line := l.reload(extra+"  drill: {schedule: \"0 4 * *\"}\n", l.lyra, mallory, vega, nova)
	_, novaErr := l.a.Dial(nova)
	_, malloryErr := l.a.Dial(mallory)
	after := l.jobPlan()
	unchanged := strings.Contains(line, `msg="reloading the configuration failed; the old one stays"`) &&
		strings.Contains(line, `jobs.drill.schedule: \"0 4 * *\": expected exactly 5 fields, found 4`) &&
		novaErr != nil && malloryErr != nil && len(plan) == 2 && slices.Equal(plan, after)
	if !unchanged {
		t.Errorf("failed reload: %s; nova %v; mallory's revoked key %v; jobs %q then %q", line, novaErr, malloryErr, plan, after)
	} else {
		detected++
	}
	mallory.Key = oldKey
	if err := l.pushLyra(); err != nil {
		t.Errorf("after the failed reload: %v", err)
	}
	notes = append(notes, "reload with a bad cron schedule, a new node and the revoked key back: refused whole, jobs kept their plan")

	// 3. vega loses push in the middle of a session.
	vs := func() *raw {
		r, err := l.a.open(vega, "cairn-wire")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.close)
		if _, err := r.hello("vega"); err != nil {
			t.Fatal(err)
		}
		return r
	}()
	vega.Perms = "read"
	if line := l.reload(extra, l.lyra, mallory, vega); !strings.Contains(line, "configuration reloaded") {
		t.Fatalf("reload: %s", line)
	}
	data := []byte("vega's blob after losing push")
	vs.frame(wire.TypePutBlob, (&wire.PutBlob{Handle: blob.Handle{ID: blob.Hash(data), Type: blob.Data}, Compression: wire.CompressionRaw, RawLength: uint32(len(data)), Payload: data}).Append(nil))
	e3, _ := vs.refusal(30 * time.Second)
	st3, _ := vs.exit(30 * time.Second)
	list, lerr := l.a.open(vega, "snapshots")
	lst := -1
	if lerr == nil {
		list.in.Close()
		lst, _ = list.exit(30 * time.Second)
		list.close()
	}
	shrunk := e3 != nil && e3.Code == wire.CodePermissionDenied && e3.Message == "node vega lost the push permission" && st3 == 1 && lst == 0
	if !shrunk {
		t.Errorf("permissions shrunk: %v exit %d; a new read session %v exit %d", e3, st3, lerr, lst)
	} else {
		detected++
	}
	if err := l.pushLyra(); err != nil {
		t.Errorf("after the permissions shrank: %v", err)
	}
	notes = append(notes, "push taken from a node mid-session: its next blob refused, reading still allowed")

	if l.a.Dead() {
		t.Fatalf("the appliance died:\n%s", apptest.Tail(l.a.Log(), 30))
	}
	record("revocation and reload", 3, detected, l.lost(), strings.Join(notes, "; "))
}
