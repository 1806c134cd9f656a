package wire_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/wire"
)

// failingBackend hands out stores that fail to store any blob, as a full
// disk does.
type failingBackend struct{ backend }

func (b failingBackend) Begin() wire.Store { return failingStore{b.R.NewSession()} }

type failingStore struct{ *repo.Session }

func (failingStore) SavePrepared(context.Context, blob.Handle, pack.Compression, []byte, int, []byte) (bool, []byte, error) {
	return false, nil, fmt.Errorf("pack 0123abcd: write: %w", syscall.ENOSPC)
}

// When the server cannot store a blob (a full disk), it sends an Error
// and closes the stream while the client is still sending blobs. The
// client used to report its own write error ("EOF", found by the torture
// suite's full-disk test) instead of the server's reason; it now reports
// the server's Error.
func TestClientReportsTheServersReason(t *testing.T) {
	r := repotest.New(t)
	s := serveBackend(t, failingBackend{backend{R: r}}, config(wire.PermPush))
	c := dial(t, s)
	up := c.NewUploader(pack.LevelFastest)
	var err error
	for i := 0; i < 2000 && err == nil; i++ {
		_, _, err = up.SaveBlob(t.Context(), blob.Data, bigBlob(uint64(i), 64<<10))
	}
	if err == nil {
		err = up.Flush(t.Context())
	}
	up.Close()
	remoteError(t, err, wire.CodeInternal, "pack 0123abcd: write: no space left on device")
}
