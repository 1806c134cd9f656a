package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	// readyTimeout bounds the wait from exec to S3 answering; weed mini
	// answers within about 15 s on an idle machine, and tests run while
	// other test binaries compile.
	readyTimeout = 2 * time.Minute
	pollInterval = 200 * time.Millisecond
	// stopTimeout is how long weed gets to exit on SIGTERM before SIGKILL.
	stopTimeout = 5 * time.Second
	// startAttempts: ports picked free may be taken before weed binds them.
	startAttempts = 3
	logLimit      = 256 << 10
)

// Server is a running weed mini serving S3 on 127.0.0.1.
type Server struct {
	// Endpoint is the S3 address, "127.0.0.1:PORT" (plain HTTP).
	Endpoint string
	// AccessKey and SecretKey are the one identity the server accepts
	// (random for each server; the identity may do anything).
	AccessKey, SecretKey string
	// Dir holds the server's data and s3.json.
	Dir string

	bin     string
	args    []string
	sockets []string // the Unix sockets weed makes in /tmp, named by port
	buckets atomic.Int64

	mu sync.Mutex
	p  *process // the running weed, nil while stopped
}

// Start starts a weed mini for the test and returns once S3 answers. A
// t.Cleanup stops it and removes its directory; if the test failed it
// logs the end of weed's log. Start skips the test when weed is not built
// (see the package documentation), or fails it under CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := WeedBinary(t)
	dir := t.TempDir()
	s, err := start(bin, dir)
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("s3test: weed log (S3 at %s, dir %s), last part:\n%s", s.Endpoint, s.Dir, s.Log())
		}
		s.Stop()
	})
	return s
}

var shared struct {
	once sync.Once
	s    *Server
	dir  string
	err  error
}

// Shared returns a server shared by every test of the test binary,
// starting it on first use. Tests that use it should take a bucket of
// their own with [Server.NewBucket]. The package's TestMain should call
// [StopShared] after m.Run; without it the kernel still kills weed when
// the test binary exits, but its directory stays in os.TempDir.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin := WeedBinary(t)
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "s3test-weed-")
		if shared.err == nil {
			shared.s, shared.err = start(bin, shared.dir)
		}
	})
	if shared.err != nil {
		t.Fatalf("s3test: shared server: %v", shared.err)
	}
	return shared.s
}

// StopShared stops the server [Shared] started, if any, and removes its
// directory.
func StopShared() {
	if shared.s != nil {
		shared.s.Stop()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

func start(bin, dir string) (*Server, error) {
	s := &Server{Dir: dir, bin: bin, AccessKey: "cairn" + randomHex(8), SecretKey: randomHex(20)}
	cfg := fmt.Sprintf(`{"identities":[{"name":"cairn","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`,
		s.AccessKey, s.SecretKey)
	cfgPath := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	var failures []string
	for attempt := 1; attempt <= startAttempts; attempt++ {
		ports, err := freePorts(10)
		if err != nil {
			return nil, fmt.Errorf("pick ports: %w", err)
		}
		s.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		s.args = []string{"mini",
			"-dir=" + data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
			"-s3.config=" + cfgPath,
			"-s3.port=" + strconv.Itoa(ports[0]), "-s3.port.grpc=" + strconv.Itoa(ports[1]),
			"-master.port=" + strconv.Itoa(ports[2]), "-master.port.grpc=" + strconv.Itoa(ports[3]),
			"-filer.port=" + strconv.Itoa(ports[4]), "-filer.port.grpc=" + strconv.Itoa(ports[5]),
			"-volume.port=" + strconv.Itoa(ports[6]), "-volume.port.grpc=" + strconv.Itoa(ports[7]),
			"-admin.port=" + strconv.Itoa(ports[8]), "-admin.port.grpc=" + strconv.Itoa(ports[9]),
			"-admin.port.legacy=0", "-admin.ui=false",
			"-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
			"-master.telemetry=false", // no traffic off this machine
			// weed mini sizes its volume count from the disk's free space
			// (free space / volume size) and every bucket is a collection
			// that takes volumes of its own: on a machine with a few GiB
			// free, the tenth bucket's writes fail with HTTP 500. Volumes
			// are sparse files created on demand, so a fixed, generous
			// count and size hold on any disk the tests fit on.
			"-volume.max=1000", "-master.volumeSizeLimitMB=64",
		}
		sock := func(name string, port int) string { return fmt.Sprintf("/tmp/seaweedfs-%s-%d.sock", name, port) }
		s.sockets = []string{sock("s3", ports[0]), sock("s3-grpc", ports[1]), sock("master-grpc", ports[3]),
			sock("filer", ports[4]), sock("filer-grpc", ports[5]), sock("volume-grpc", ports[7]), sock("admin-grpc", ports[9])}
		err = s.run()
		if err == nil {
			return s, nil
		}
		s.removeSockets()
		failures = append(failures, fmt.Sprintf("attempt %d (S3 port %d): %v", attempt, ports[0], err))
		if !strings.Contains(err.Error(), "not available") && !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("start %s %s:\n%s", bin, strings.Join(s.args, " "), strings.Join(failures, "\n"))
}

// run starts weed with s.args and waits until S3 answers.
func (s *Server) run() error {
	p, err := startProcess(s.bin, s.args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := s.waitReady(ctx, p); err != nil {
		p.stop()
		return fmt.Errorf("%w\nweed log, last part:\n%s", err, p.Log())
	}
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
	return nil
}

// waitReady polls S3 with a signed ListBuckets until it succeeds, weed
// exits, or ctx ends.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, last = c.ListBuckets(rctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("weed exited before S3 answered: %v", p.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("S3 did not answer within %v: %v", readyTimeout, last)
		case <-tick.C:
		}
	}
}

// Client returns a minio-go client for the server's S3 with its
// credentials.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := s.client()
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	return c
}

func (s *Server) client() (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		MaxRetries: 1,
	})
}

// NewBucket creates a bucket with a name of its own and returns it.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", s.buckets.Add(1), randomHex(4))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("s3test: make bucket %s at %s: %v", name, s.Endpoint, err)
	}
	return name
}

// Stop stops weed: SIGTERM, then SIGKILL if it has not exited within a
// bound; then it removes the Unix sockets weed left in /tmp. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.p
	s.p = nil
	s.mu.Unlock()
	if p != nil {
		p.stop()
		s.removeSockets()
	}
}

func (s *Server) removeSockets() {
	for _, path := range s.sockets {
		os.Remove(path)
	}
}

// Kill sends weed SIGKILL, as a crash or the OOM killer would, and waits
// for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.p
	s.p = nil
	s.mu.Unlock()
	if p != nil {
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// Restart starts weed again, after Stop or Kill, on the same ports and
// directory, and waits until S3 answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.run(); err != nil {
		t.Fatalf("s3test: restart %s: %v", s.Endpoint, err)
	}
}

// CPUTime returns the CPU time weed has used since it was (re)started,
// for benchmarks that count the store's share of two shared cores; ok is
// false while it is stopped, or where the kernel does not say (other
// than Linux).
func (s *Server) CPUTime() (d time.Duration, ok bool) {
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p == nil {
		return 0, false
	}
	return cpuTime(p.cmd.Process.Pid)
}

// Log returns the end of what weed has logged.
func (s *Server) Log() string {
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p == nil {
		return "(stopped)"
	}
	return p.Log()
}

// WeedBinary returns the path of the weed binary: $CAIRN_WEED, or the
// one make deps built into the cache. It skips the test if there is
// none, or fails it when CI is "true".
func WeedBinary(t testing.TB) string {
	t.Helper()
	path, err := weedPath()
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(path); err == nil && (!fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0) {
			err = errors.New("not an executable file")
		}
	}
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("s3test: SeaweedFS's weed is needed (make deps builds it, about 4 minutes the first time; or set CAIRN_WEED): %v", err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// weedPath is $CAIRN_WEED, or CACHE/cairn/weed-VERSION with VERSION from
// the tools module's go.mod beside this package.
func weedPath() (string, error) {
	if p := os.Getenv("CAIRN_WEED"); p != "" {
		return p, nil
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the s3test package's source")
	}
	gomod := filepath.Join(filepath.Dir(file), "..", "tools", "seaweedfs", "go.mod")
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	version := ""
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "require" && f[1] == "github.com/seaweedfs/seaweedfs" {
			version = f[2]
		}
	}
	if version == "" {
		return "", fmt.Errorf("%s: no require line for github.com/seaweedfs/seaweedfs", gomod)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "cairn", "weed-"+version), nil
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago (all held open together, so they differ).
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// process is one run of weed and its collected log.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	log    *tailBuffer
	once   sync.Once
}

func startProcess(bin string, args []string) (*process, error) {
	p := &process{cmd: exec.Command(bin, args...), exited: make(chan struct{}), log: &tailBuffer{limit: logLimit}}
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM, then SIGKILL after stopTimeout, and waits.
func (p *process) stop() {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(stopTimeout)
		defer t.Stop()
		select {
		case <-p.exited:
		case <-t.C:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

func (p *process) Log() string { return p.log.String() }

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
