package appliance

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A request that says it carries a mount's /dev/fuse connection is
// refused when none, or another kind of file, comes with it; the
// command never runs.
func TestPassedFileMustBeFUSE(t *testing.T) {
	rn := serveTest(t, configText("")) // runs no operator commands: a refusal comes first
	sock := filepath.Join(rn.dir, "s.sock")
	other, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code, err := CallWithFile(context.Background(), sock, &Request{Kind: "operator", Args: []string{"mount", "/x"}, Repo: rn.a.r.Dir()},
		func() (*os.File, error) { return other, nil }, nil, &bytes.Buffer{}, &stderr)
	if err != nil || code != 2 || stderr.String() != "cairn: the descriptor that came with the request is not /dev/fuse\n" {
		t.Fatalf("/dev/null passed as /dev/fuse: exit %d, %v, %q", code, err, stderr.String())
	}
	stderr.Reset()
	code, err = Call(context.Background(), sock, &Request{Kind: "operator", Args: []string{"mount", "/x"}, Repo: rn.a.r.Dir(), FUSE: true}, nil, &bytes.Buffer{}, &stderr)
	if err != nil || code != 2 || stderr.String() != "cairn: the request says a mount's /dev/fuse descriptor comes with it, and none came\n" {
		t.Fatalf("no descriptor: exit %d, %v, %q", code, err, stderr.String())
	}
}
