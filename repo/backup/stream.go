package backup

import (
	"context"
	"io"
	"os"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/tree"
)

// Stream backs up one stream (for example a database dump on stdin) as
// a single file called name at the root of the snapshot. The file gets
// mode 0600 (dumps hold secrets), the current user as owner and the
// current time.
func Stream(ctx context.Context, up Uploader, r io.Reader, name string, o Options) (*Result, error) {
	if err := checkRootName(name); err != nil {
		return nil, err
	}
	return run(ctx, up, o, func(ctx context.Context, w *walker) (blob.ID, error) {
		now := w.o.Now().UnixNano()
		uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
		n := tree.Node{Name: name, Type: tree.File, Mode: 0o600, UID: uid, GID: gid,
			User: w.owners.user(uid), Group: w.owners.group(gid), MTime: now, ATime: now, CTime: now}
		ch := chunker.New(nil, w.o.Params, w.o.Table)
		if err := w.p.readStream(ch, r, &n, name); err != nil {
			return blob.ID{}, err
		}
		w.sum.Files, w.sum.FilesNew, w.sum.Bytes = 1, 1, n.Size
		w.o.Progress.Files.Add(1)
		w.o.Progress.Bytes.Add(n.Size)
		return w.saveTree(ctx, &tree.Tree{Nodes: []tree.Node{n}}, "/")
	})
}
