package snapfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sort"
	"sync"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/tree"
)

// File reads the contents of one file node of a snapshot. Chunk sizes are
// stored in the tree, so finding the chunk that holds an offset is a
// binary search with no index lookups. A File is safe for concurrent use.
type File struct {
	l       BlobLoader
	load    func(context.Context, blob.Handle, []byte) ([]byte, error) // l.LoadBlob, or LoadBlobUnhashed ([File.Unhashed])
	node    *tree.Node
	offsets []int64 // start of chunk i; offsets[len(Content)] is the size
}

// ErrNotFile is returned by OpenFile for nodes that are not regular files.
var ErrNotFile = errors.New("not a regular file")

// OpenFile returns a File for node n, which must be a regular file.
func OpenFile(l BlobLoader, n *tree.Node) (*File, error) {
	if n.Type != tree.File {
		return nil, fmt.Errorf("%s: %w", n.Name, ErrNotFile)
	}
	offs := make([]int64, len(n.Content)+1)
	for i, c := range n.Content {
		offs[i+1] = offs[i] + int64(c.Size)
	}
	return &File{l: l, load: l.LoadBlob, node: n, offsets: offs}, nil
}

// Unhashed returns f reading its chunks without re-hashing each ([UnhashedLoader]),
// if its loader can; otherwise f. The caller must hash every byte it
// reads against the node's FileHash, and on a mismatch load the chunks
// again with f to learn which one is wrong.
func (f *File) Unhashed() *File {
	u, ok := f.l.(UnhashedLoader)
	if !ok {
		return f
	}
	g := *f
	g.load = u.LoadBlobUnhashed
	return &g
}

// Size is the file's length.
func (f *File) Size() int64 { return f.offsets[len(f.offsets)-1] }

// Node is the file's tree node.
func (f *File) Node() *tree.Node { return f.node }

// ReadAt reads len(p) bytes at off, loading only the chunks it needs.
// Holes read as zeros. It returns io.EOF when the read reaches the end.
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("snapfs: negative offset")
	}
	size := f.Size()
	if off >= size {
		return 0, io.EOF
	}
	i := sort.Search(len(f.node.Content), func(i int) bool { return f.offsets[i+1] > off })
	n := 0
	var buf []byte
	for n < len(p) && i < len(f.node.Content) {
		c := f.node.Content[i]
		within := off + int64(n) - f.offsets[i]
		want := min(int64(len(p)-n), int64(c.Size)-within)
		if c.ID.IsZero() {
			clear(p[n : n+int(want)])
		} else {
			var err error
			buf, err = f.load(ctx, blob.Handle{ID: c.ID, Type: blob.Data}, buf)
			if err != nil {
				return n, err
			}
			if uint64(len(buf)) != c.Size {
				return n, fmt.Errorf("chunk %s is %d bytes, the tree says %d: %w", c.ID.Short(), len(buf), c.Size, blob.ErrCorrupt)
			}
			copy(p[n:n+int(want)], buf[within:])
		}
		n += int(want)
		i++
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Chunk is one piece of a file yielded by [File.Chunks].
type Chunk struct {
	Offset int64
	Size   int64
	Hole   bool   // Data is nil: Size zero bytes not stored
	Data   []byte // valid until the next iteration
}

// Chunks yields the file's chunks in order, loading up to window chunks
// ahead in parallel (window < 1 means 1). Every goroutine it starts has
// ended when the iteration ends. Memory: window+1 chunk buffers.
func (f *File) Chunks(ctx context.Context, window int) iter.Seq2[Chunk, error] {
	return func(yield func(Chunk, error) bool) {
		window = max(window, 1)
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		type result struct {
			data []byte
			err  error
		}
		content := f.node.Content
		results := make([]chan result, len(content))
		// window loads in flight plus the one the caller holds.
		free := make(chan []byte, window+1)
		for range window + 1 {
			free <- nil
		}
		launched := 0
		launch := func(upTo int) {
			for ; launched < len(content) && launched <= upTo; launched++ {
				c := content[launched]
				ch := make(chan result, 1)
				results[launched] = ch
				if c.ID.IsZero() {
					ch <- result{}
					continue
				}
				buf := <-free
				wg.Add(1)
				go func() {
					defer wg.Done()
					data, err := f.load(ctx, blob.Handle{ID: c.ID, Type: blob.Data}, buf)
					if err == nil && uint64(len(data)) != c.Size {
						err = fmt.Errorf("chunk %s is %d bytes, the tree says %d: %w", c.ID.Short(), len(data), c.Size, blob.ErrCorrupt)
					}
					ch <- result{data: data, err: err}
				}()
			}
		}
		for i, c := range content {
			launch(i + window - 1)
			r := <-results[i]
			results[i] = nil
			ck := Chunk{Offset: f.offsets[i], Size: int64(c.Size), Hole: c.ID.IsZero(), Data: r.data}
			if r.err != nil {
				yield(ck, r.err)
				return
			}
			if !yield(ck, nil) {
				return
			}
			if !ck.Hole {
				free <- r.data[:0]
			}
		}
	}
}
