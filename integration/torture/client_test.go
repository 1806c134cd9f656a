package torture

// The node's side of a session with an appliance that falls silent, dies,
// or is interrupted by a signal: cairn push and restore --from must end
// in every phase, with an exit code and a message that say what happened
// and what of the push was acknowledged (issue 12, item 14 and the clear
// answers).

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/integration/sshtest"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/wire"
	"golang.org/x/crypto/ssh"
)

// Where a fake appliance falls silent.
const (
	silentTCP    = "tcp"    // accepts the TCP connection, reads the client's SSH identification, never speaks
	silentExec   = "exec"   // completes the SSH handshake, never answers the exec request
	silentHello  = "hello"  // starts cairn-wire, never answers the Hello
	silentList   = "list"   // welcomes the node, never answers the snapshot list
	silentUpload = "upload" // lists no snapshots, never answers a have-blobs question
	silentCommit = "commit" // takes every blob, never answers the commit
	silentLoad   = "load"   // lists one snapshot, never answers the load of its tree
)

// fakeAppliance listens on 127.0.0.1 and plays an appliance up to the
// phase it falls silent at; from then on it neither reads nor writes,
// and holds the connection open until the test ends.
type fakeAppliance struct {
	t        *testing.T
	ln       net.Listener
	port     int
	hostKey  string // SHA256 fingerprint, for --host-key
	keyLine  string // "ssh-ed25519 AAAA…", for known_hosts
	silentAt string
	reached  chan string // the phase each connection fell silent at
	done     chan struct{}
	mu       sync.Mutex
	conns    []net.Conn

	// handler, if set (under mu), plays cairn-wire on the exec channel instead of
	// wire (wirefrom_test.go).
	handler func(ssh.Channel)
}

func newFakeAppliance(t *testing.T, silentAt string) *fakeAppliance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAppliance{t: t, ln: ln, port: ln.Addr().(*net.TCPAddr).Port, silentAt: silentAt,
		hostKey: ssh.FingerprintSHA256(signer.PublicKey()),
		keyLine: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))),
		reached: make(chan string, 16), done: make(chan struct{})}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil },
	}
	cfg.AddHostKey(signer)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.serve(c, cfg)
			}()
		}
	}()
	t.Cleanup(func() {
		close(f.done)
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	return f
}

// silent reports the phase and holds until the test ends.
func (f *fakeAppliance) silent(phase string) {
	f.reached <- phase
	<-f.done
}

// waitSilent waits until a connection of p reached the phase the fake
// falls silent at.
func (f *fakeAppliance) waitSilent(p *running) {
	f.t.Helper()
	select {
	case ph := <-f.reached:
		if ph != f.silentAt {
			f.t.Fatalf("the fake appliance fell silent at %s, want %s", ph, f.silentAt)
		}
	case <-p.exited:
		f.t.Fatalf("the process ended before the fake appliance fell silent at %s: %s", f.silentAt, p.wait(f.t))
	case <-time.After(60 * time.Second):
		f.t.Fatalf("no connection reached %s within a minute", f.silentAt)
	}
}

func (f *fakeAppliance) serve(c net.Conn, cfg *ssh.ServerConfig) {
	if f.silentAt == silentTCP {
		// Silent once the client is in its SSH handshake: it sends its
		// identification line first (the accept alone can come before
		// the client's dial has returned and it says "connecting").
		c.SetReadDeadline(time.Now().Add(time.Minute))
		line, err := bufio.NewReader(io.LimitReader(c, 256)).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
			return
		}
		c.SetReadDeadline(time.Time{})
		f.silent(silentTCP)
		return
	}
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		for req := range creqs {
			if req.Type != "exec" {
				req.Reply(false, nil)
				continue
			}
			if f.silentAt == silentExec {
				f.silent(silentExec)
				return
			}
			req.Reply(true, nil)
			go ssh.DiscardRequests(creqs)
			f.mu.Lock()
			handler := f.handler
			f.mu.Unlock()
			if handler != nil {
				handler(ch) // a hostile appliance of another test
				return
			}
			f.wire(ch)
			return
		}
	}
}

// wire plays cairn-wire on ch up to the silent phase.
func (f *fakeAppliance) wire(ch ssh.Channel) {
	r, w := wire.NewReader(ch), wire.NewWriter(ch)
	send := func(t wire.Type, body []byte) bool {
		return w.WriteFrame(t, body) == nil && w.Flush() == nil
	}
	if _, _, err := r.Next(nil); err != nil {
		return
	}
	if f.silentAt == silentHello {
		f.silent(silentHello)
		return
	}
	wel := &wire.Welcome{Version: wire.Version, Node: "lyra", Perms: wire.PermPush | wire.PermRead,
		ChunkMin: 16 << 10, ChunkAvg: 64 << 10, ChunkMax: 256 << 10, MaxBatch: 4096, MaxInflight: 8}
	if !send(wire.TypeWelcome, wel.Append(nil)) {
		return
	}
	for {
		t, body, err := r.Next(nil)
		if err != nil {
			return
		}
		switch t {
		case wire.TypeListSnapshots:
			if f.silentAt == silentList {
				f.silent(silentList)
				return
			}
			m, _ := wire.DecodeListSnapshots(body)
			answer := &wire.Snapshots{Req: m.Req}
			if f.silentAt == silentLoad {
				rec, id, err := snapshot.Encode(&snapshot.Snapshot{Version: snapshot.Version, Time: time.Now(), Node: "lyra",
					Paths: []string{"/etc"}, Tree: blob.Hash([]byte("a tree the fake never sends"))})
				if err != nil {
					f.t.Error(err)
					return
				}
				answer.Items = []wire.SnapshotItem{{ID: id, Record: rec}}
			}
			if !send(wire.TypeSnapshots, answer.Append(nil)) {
				return
			}
		case wire.TypeLoadBlob:
			f.silent(silentLoad)
			return
		case wire.TypeHaveBlobs:
			if f.silentAt == silentUpload {
				f.silent(silentUpload)
				return
			}
			m, _ := wire.DecodeHaveBlobs(body)
			if !send(wire.TypeHave, (&wire.Have{Req: m.Req, Has: make([]bool, len(m.Handles))}).Append(nil)) {
				return
			}
		case wire.TypeCommit:
			f.silent(silentCommit)
			return
		}
	}
}

// running is a cairn process the test signals.
type running struct {
	cmd    *exec.Cmd
	args   []string
	out    bytes.Buffer
	errb   bytes.Buffer
	err    error         // of Wait, once exited is closed
	exited chan struct{} // closed when the process ended
}

func (e *env) start(args ...string) *running {
	e.t.Helper()
	p := &running{cmd: cairnCommand(args...), args: args, exited: make(chan struct{})}
	p.cmd.Env = append(cleanEnviron(), e.vars...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.errb
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	e.t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// wait waits for the process to end; a process still running after a
// minute is killed and the test fails: it hangs.
func (p *running) wait(t testing.TB) result {
	t.Helper()
	select {
	case <-p.exited:
		return finish(t, p.cmd, p.err, p.args, &p.out, &p.errb)
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("cairn %s still ran a minute later: it hangs\nstderr: %s", strings.Join(p.args, " "), p.errb.String())
		return result{}
	}
}

// silentPhases names each phase where a fake appliance falls silent as
// push reports it.
var silentPhases = []struct{ at, phase string }{
	{silentTCP, "during the SSH handshake"},
	{silentExec, "while starting cairn-wire"},
	{silentHello, "during the wire handshake"},
	{silentList, "while listing snapshots"},
	{silentUpload, "during the upload"},
	{silentCommit, "during the commit"},
}

// TestSilentAppliance runs cairn push against appliances that fall
// silent in each phase of a push: with a short --timeout the push ends
// with a message naming the phase and the appliance; with the default
// one, SIGINT and SIGTERM end it at once with exit codes 130 and 143.
// Nothing waits on time: the test signals once the fake appliance has
// reached the phase, and each --timeout run ends by itself.
func TestSilentAppliance(t *testing.T) {
	lyra := newNode(t, "lyra", "push, read")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	runs, detected := 0, 0
	for _, sp := range silentPhases {
		for _, how := range []string{"timeout", "SIGINT", "SIGTERM"} {
			runs++
			t.Run(sp.at+"/"+how, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				f := newFakeAppliance(t, sp.at)
				addr := fmt.Sprintf("127.0.0.1:%d", f.port)
				args := []string{"push", "ssh://lyra@" + addr, "-i", lyra.Key.PrivatePath, "--host-key", f.hostKey, "--plan", "files", src}
				var want string
				var code int
				var p *running
				switch how {
				case "timeout":
					p = e.start(append(args, "--timeout", "1s")...)
					f.waitSilent(p)
					code = 1
					want = fmt.Sprintf("cairn: push: the appliance %s was silent for 1s %s (--timeout): nothing of this push was acknowledged\n", addr, sp.phase)
				default:
					p = e.start(args...)
					f.waitSilent(p)
					sig, c := syscall.SIGINT, 130
					if how == "SIGTERM" {
						sig, c = syscall.SIGTERM, 143
					}
					p.cmd.Process.Signal(sig)
					code = c
					want = fmt.Sprintf("cairn: push interrupted by %s %s (appliance %s): nothing of this push was acknowledged\n", how, sp.phase, addr)
				}
				r := p.wait(t)
				if r.code == code && r.stderr == want {
					mu.Lock()
					detected++
					mu.Unlock()
				} else {
					t.Fatalf("%s\nwant exit %d and stderr %q", r, code, want)
				}
			})
		}
	}
	t.Cleanup(func() {
		record("silent appliance: cairn push in each phase (timeout, SIGINT, SIGTERM)", runs, detected, 0,
			fmt.Sprintf("fake appliances silent after TCP accept, the SSH handshake, exec, Hello, the snapshot list, a have-blobs question and the commit; %d of %d runs ended with the phase named and exit 1/130/143", detected, runs))
	})
}

// TestSilentApplianceRestore: restore --from ends the same way, and says
// whether anything was restored.
func TestSilentApplianceRestore(t *testing.T) {
	lyra := newNode(t, "lyra", "push, read")
	cases := []struct{ at, how, phase string }{
		{silentTCP, "timeout", "during the SSH handshake"},
		{silentExec, "timeout", "while starting cairn-wire"},
		{silentHello, "timeout", "during the wire handshake"},
		{silentList, "timeout", "while listing snapshots"},
		{silentLoad, "timeout", "during the restore"},
		{silentHello, "SIGTERM", "during the wire handshake"},
		{silentList, "SIGINT", "while listing snapshots"},
		{silentLoad, "SIGINT", "during the restore"},
	}
	var mu sync.Mutex
	runs, detected := 0, 0
	for _, c := range cases {
		runs++
		t.Run(c.at+"/"+c.how, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			f := newFakeAppliance(t, c.at)
			addr := fmt.Sprintf("127.0.0.1:%d", f.port)
			args := []string{"restore", "latest", "--target", filepath.Join(e.dir, "out"), "--from", "ssh://lyra@" + addr, "-i", lyra.Key.PrivatePath, "--host-key", f.hostKey}
			outcome := "nothing was restored"
			if c.at == silentLoad {
				outcome = "the files in " + filepath.Join(e.dir, "out") + " are incomplete"
			}
			var want string
			code := 1
			var p *running
			if c.how == "timeout" {
				p = e.start(append(args, "--timeout", "1s")...)
				f.waitSilent(p)
				want = fmt.Sprintf("cairn: restore: the appliance %s was silent for 1s %s (--timeout): %s\n", addr, c.phase, outcome)
			} else {
				p = e.start(args...)
				f.waitSilent(p)
				sig := syscall.SIGINT
				code = 130
				if c.how == "SIGTERM" {
					sig, code = syscall.SIGTERM, 143
				}
				p.cmd.Process.Signal(sig)
				want = fmt.Sprintf("cairn: restore interrupted by %s %s (appliance %s): %s\n", c.how, c.phase, addr, outcome)
			}
			r := p.wait(t)
			if r.code == code && r.stderr == want {
				mu.Lock()
				detected++
				mu.Unlock()
			} else {
				t.Fatalf("%s\nwant exit %d and stderr %q", r, code, want)
			}
		})
	}
	t.Cleanup(func() {
		record("silent appliance: cairn restore --from", runs, detected, 0,
			fmt.Sprintf("%d of %d runs ended with the phase named and exit 1/130/143", detected, runs))
	})
}

// TestSilentApplianceSSHCommand: through the system ssh client
// (--ssh-command) the wire handshake is bounded the same way.
func TestSilentApplianceSSHCommand(t *testing.T) {
	sshBin := sshtest.SSHBinary(t)
	lyra := newNode(t, "lyra", "push, read")
	e := newEnv(t)
	f := newFakeAppliance(t, silentHello)
	addr := fmt.Sprintf("127.0.0.1:%d", f.port)
	sshArgs := sshtest.SSHArgsFor(t, "127.0.0.1", f.port, f.keyLine, "lyra", lyra.Key)
	// The options without the port and destination, which push adds.
	opts := append([]string{sshBin}, sshArgs[:len(sshArgs)-1]...)
	for i := 0; i < len(opts); i++ {
		if opts[i] == "-p" {
			opts = append(opts[:i], opts[i+2:]...)
			break
		}
	}
	p := e.start("push", "ssh://lyra@"+addr, "--ssh-command", strings.Join(opts, " "), "--timeout", "1s", "--stdin", "--name", "x")
	f.waitSilent(p)
	r := p.wait(t)
	want := fmt.Sprintf("cairn: push: the appliance %s was silent for 1s during the wire handshake (--timeout): nothing of this push was acknowledged\n", addr)
	if r.code != 1 || r.stderr != want {
		t.Fatalf("%s\nwant exit 1 and stderr %q", r, want)
	}
}

// TestApplianceDiesDuringPush kills the real appliance (a crash point)
// while it commits a push: the node says the appliance closed the
// connection and names the snapshots that were acknowledged before; each
// acknowledged snapshot restores identical after the restart.
func TestApplianceDiesDuringPush(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	lyra := newNode(t, "lyra", "push, read")
	a, b := filepath.Join(e.dir, "a"), filepath.Join(e.dir, "b")
	for _, d := range []string{a, b} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "data"), bytes.Repeat([]byte(d), 50000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	planFile := filepath.Join(e.dir, "plan.yaml")
	plan := fmt.Sprintf("sources:\n  - name: a\n    class: files\n    why: test\n    paths: [%s]\n  - name: b\n    class: files\n    why: test\n    paths: [%s]\n", a, b)
	if err := os.WriteFile(planFile, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	runs, detected, lost := 0, 0, 0
	defer func() {
		record("crash: SIGKILL of the appliance during a commit: the node's message", runs, detected, lost,
			"the node says the appliance closed the connection during the commit and names the snapshots acknowledged before it")
	}()

	// One source: nothing acknowledged.
	app := e.serve([]string{"CAIRN_CRASHPOINT=before-snapshot-write"}, "", lyra)
	r := app.push(lyra, nil, nil, "--plan", "a", a)
	runs++
	if !app.KilledBySIGKILL(30 * time.Second) {
		t.Fatalf("the appliance was not killed: %s", r)
	}
	want := fmt.Sprintf("cairn: push: the appliance 127.0.0.1:%d closed the connection during the commit (it may have stopped or crashed): nothing of this push was acknowledged\n", app.Port)
	if r.code != 1 || r.stderr != want {
		t.Fatalf("%s\nwant exit 1 and stderr %q", r, want)
	}
	detected++

	// A plan of two sources, killed at the second commit: the first
	// snapshot was acknowledged, and the message says so.
	app = e.serve([]string{"CAIRN_CRASHPOINT=before-snapshot-write:2"}, "", lyra)
	r = app.push(lyra, nil, nil, "--json", "--plan", planFile)
	runs++
	if !app.KilledBySIGKILL(30 * time.Second) {
		t.Fatalf("the appliance was not killed: %s", r)
	}
	var s backupSummary
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, `"type":"summary"`) {
			s, _ = summaryOf(line)
		}
	}
	if s.Snapshot == "" {
		t.Fatalf("no summary of the first source: %s", r)
	}
	want = fmt.Sprintf("cairn: push: the appliance 127.0.0.1:%d closed the connection during the commit (it may have stopped or crashed): snapshot %s (plan a) was acknowledged, nothing after it\n", app.Port, s.Snapshot[:8])
	if r.code != 1 || r.stderr != want {
		t.Fatalf("%s\nwant exit 1 and stderr %q", r, want)
	}
	detected++
	app = e.serve(nil, "", lyra)
	out := filepath.Join(e.dir, "restored")
	e.ok("restore", s.Snapshot+":"+a, "--target", out)
	if got, err := os.ReadFile(filepath.Join(out, "a", "data")); err != nil || !bytes.Equal(got, bytes.Repeat([]byte(a), 50000)) {
		lost++
		t.Errorf("the acknowledged snapshot %s does not restore its file: %v", s.Snapshot, err)
	}
	var list []struct{ Plan string }
	if err := json.Unmarshal([]byte(e.ok("snapshots", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Plan != "a" {
		t.Errorf("snapshots after the crash: %+v, want only the acknowledged one of plan a", list)
	}
	app.Stop()
}

// TestApplianceDiesDuringOperatorCommand kills the appliance while it
// runs an operator's forget relayed through its socket: the operator is
// told the appliance closed the connection and that the outcome is
// unknown.
func TestApplianceDiesDuringOperatorCommand(t *testing.T) {
	e := newEnv(t)
	e.initRepo()
	src := filepath.Join(e.dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := os.WriteFile(filepath.Join(src, "f"), []byte(fmt.Sprint("version ", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		e.ok("backup", "--plan", "p", src)
	}
	app := e.serve([]string{"CAIRN_CRASHPOINT=forget-before-index"}, "")
	r := e.run(nil, nil, "forget", "--keep-last", "1")
	if !app.KilledBySIGKILL(30 * time.Second) {
		t.Fatalf("the appliance was not killed: %s", r)
	}
	want := "cairn: forget: the appliance closed the connection before the command finished (it may have stopped or crashed): the command's outcome is unknown; check `cairn snapshots` and the appliance's log\n"
	detected := 0
	if r.code == 1 && r.stderr == want {
		detected = 1
	}
	record("crash: SIGKILL of the appliance during an operator command", 1, detected, 0,
		"forget relayed through the socket: the operator is told the appliance stopped and the outcome is unknown")
	if detected == 0 {
		t.Fatalf("%s\nwant exit 1 and stderr %q", r, want)
	}
}
