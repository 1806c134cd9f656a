package appliance

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/repo/repotest"
)

// sigCause is a caller's context cause naming a signal, as cmd/cairn's is.
type sigCause struct{ sig syscall.Signal }

func (s sigCause) Error() string          { return "interrupted" }
func (s sigCause) Signal() syscall.Signal { return s.sig }

// The operator's signal travels with the cancel frame: the command in the
// appliance ends with an *Interrupted cause naming it; a cancel without a
// signal ends it with none.
func TestCancelCarriesSignal(t *testing.T) {
	r := repotest.New(t)
	cfgPath := filepath.Join(t.TempDir(), "a.yaml")
	if err := os.WriteFile(cfgPath, []byte("nodes: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	causes := make(chan error, 1)
	a, err := New(Options{Repo: r, ConfigPath: cfgPath, Operator: func(ctx context.Context, _ *Request, _ io.Reader, _, _ io.Writer) int {
		started <- struct{}{}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return 130
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cause error
		want  error
	}{
		{sigCause{syscall.SIGINT}, &Interrupted{Signal: syscall.SIGINT}},
		{sigCause{syscall.SIGTERM}, &Interrupted{Signal: syscall.SIGTERM}},
		{errors.New("no signal"), context.Canceled},
	} {
		cli, srv := net.Pipe()
		go a.serveSocket(t.Context(), srv)
		ctx, cancel := context.WithCancelCause(t.Context())
		go func() {
			<-started
			cancel(c.cause)
		}()
		code, err := call(ctx, cli, &Request{Kind: "operator", Repo: r.Dir()}, nil, io.Discard, io.Discard)
		cli.Close()
		got := <-causes
		var in *Interrupted
		switch want := c.want.(type) {
		case *Interrupted:
			if !errors.As(got, &in) || *in != *want || got.Error() != map[syscall.Signal]string{syscall.SIGINT: "interrupted by SIGINT", syscall.SIGTERM: "interrupted by SIGTERM"}[want.Signal] {
				t.Errorf("cause %v: the command's context ended with %v, want %v", c.cause, got, want)
			}
		default:
			if got != want {
				t.Errorf("cause %v: the command's context ended with %v, want %v", c.cause, got, want)
			}
		}
		if code != 130 || err != nil {
			t.Errorf("cause %v: exit %d, %v", c.cause, code, err)
		}
	}
}
