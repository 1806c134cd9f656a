package backup

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync/atomic"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/minio/sha256-simd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// fileJob asks a file worker to read one file and resolve f. The walker
// opened the file (file, or the error opening it gave) and asked the
// kernel to read its start ahead (prefetch).
type fileJob struct {
	path    string
	file    *os.File
	openErr error
	f       *future
	changed bool // the parent snapshot has this file (with other metadata)
}

// filesAhead is how many files the walker may open and prefetch ahead
// of the file workers: the capacity of the files queue, and so the open
// descriptors it holds.
const filesAhead = 64

// prefetchMax is how much of a file the walker asks the kernel to read
// ahead when it queues the file: all of a small file, the start of a
// larger one (the kernel's own readahead follows the file workers' reads
// from there).
const prefetchMax = 1 << 20

// prefetch opens file name of directory dir (path p) for a file worker
// and asks the kernel to read its first min(size, prefetchMax) bytes in
// the background. Small files read from a cold disk one after the other
// waited on each read: 40 000 files of a source tree took 5.4-5.8 s to
// back up with two file workers, and 2.5-3.6 s with the kernel reading
// 64 files ahead of them.
//
// The open neither follows a symbolic link nor waits for a FIFO's writer
// (O_NOFOLLOW|O_NONBLOCK): name was a regular file when the walker listed
// it, but whoever can write its directory can replace it before the open
// with a link to a file they cannot read (whose bytes the backup would
// then store under their name and mode) or with a FIFO (whose open
// would block the backup for good). readFile checks that what was opened
// is the file the walker saw (sameFile).
func prefetch(dir int, name, p string, size uint64) (*os.File, error) {
	if testHookBeforeOpen != nil {
		testHookBeforeOpen(p)
	}
	f, err := openAt(dir, name, p, unix.O_NONBLOCK)
	if errors.Is(err, unix.ELOOP) {
		return nil, errReplaced
	}
	if err != nil {
		return nil, err
	}
	if size > 0 {
		// Advice only: a failure costs the prefetch, not the file.
		unix.Fadvise(int(f.Fd()), 0, int64(min(size, prefetchMax)), unix.FADV_WILLNEED)
	}
	return f, nil
}

// blobJob asks a blob worker to store one chunk.
type blobJob struct {
	buf *[]byte
	res chan chunkResult
}

type chunkResult struct {
	id  blob.ID
	err error
}

// pipeline owns the worker goroutines and their queues.
type pipeline struct {
	ctx                        context.Context
	up                         Uploader
	o                          Options
	files                      chan fileJob
	blobs                      chan blobJob
	bufs                       chan *[]byte // free chunk buffers: a fixed number, allocated on first use (chunkBufSize)
	bytesRead                  atomic.Uint64
	skippedNew, skippedChanged atomic.Uint64
	warn                       warnings
}

func newPipeline(ctx context.Context, up Uploader, o Options) *pipeline {
	p := &pipeline{
		ctx:   ctx,
		up:    up,
		o:     o,
		files: make(chan fileJob, filesAhead),
		blobs: make(chan blobJob, 2*o.Workers),
		bufs:  make(chan *[]byte, o.Workers+2),
	}
	for range cap(p.bufs) {
		p.bufs <- new([]byte)
	}
	return p
}

// start launches the file and blob workers in g. Blob workers stop when
// the file workers have all stopped.
func (p *pipeline) start(g *errgroup.Group) {
	var fileWorkers errgroup.Group
	for range p.o.Workers {
		fileWorkers.Go(func() error { return p.fileWorker() })
	}
	g.Go(func() error {
		err := fileWorkers.Wait()
		close(p.blobs)
		return err
	})
	for range p.o.Workers {
		g.Go(p.blobWorker)
	}
}

// chunkBufSize is the capacity chunk buffers are allocated with: twice
// the average chunk, which holds all but a few percent of chunks (the
// chunker doubles the buffer for a larger one, up to the maximum, and
// blob workers then drop it). Buffers of the maximum (8 MiB by default,
// 64 MiB at most) would hold 4-16 times more memory for nothing.
func (p *pipeline) chunkBufSize() int { return min(p.o.Params.Max, 2*p.o.Params.Avg) }

// submit queues j; if the backup ends first, it closes j's file.
func (p *pipeline) submit(ctx context.Context, j fileJob) error {
	select {
	case p.files <- j:
		return nil
	case <-ctx.Done():
		if j.file != nil {
			j.file.Close()
		}
		return ctx.Err()
	}
}

func (p *pipeline) closeJobs() { close(p.files) }

// closeQueued closes the files of jobs left in the queue by a backup that
// failed, once every worker and the walker have stopped.
func (p *pipeline) closeQueued() {
	for j := range p.files {
		if j.file != nil {
			j.file.Close()
		}
	}
}

func (p *pipeline) warnings() []string { return p.warn.list }

func (p *pipeline) blobWorker() error {
	for j := range p.blobs {
		id, _, err := p.up.SaveBlob(p.ctx, blob.Data, *j.buf)
		if cap(*j.buf) > p.chunkBufSize() {
			*j.buf = nil // a rare large chunk: do not keep its buffer
		}
		p.bufs <- j.buf
		j.res <- chunkResult{id: id, err: err}
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *pipeline) fileWorker() error {
	ch := chunker.New(nil, p.o.Params, p.o.Table)
	for j := range p.files {
		if err := p.readFile(ch, j); err != nil {
			return err
		}
		p.o.Progress.Files.Add(1)
		p.o.Progress.Bytes.Add(j.f.node.Size)
		close(j.f.done)
	}
	return nil
}

// readFile reads one file, stores its chunks and fills its node. A file
// that cannot be read is skipped with a warning; only errors that must end
// the backup are returned.
func (p *pipeline) readFile(ch *chunker.Chunker, j fileJob) error {
	n := &j.f.node
	if j.openErr != nil {
		p.skip(j, j.openErr)
		return nil
	}
	f := j.file
	defer f.Close()
	before, err := fstat(f)
	if err != nil {
		p.skip(j, err)
		return nil
	}
	if !sameFile(n, before) {
		p.skip(j, errReplaced)
		return nil
	}
	h := sha256.New()
	regions := dataRegions(f, before)
	var content []tree.Chunk
	var results []chan chunkResult
	var size uint64
	for i, r := range regions {
		if r.hole {
			content = append(content, tree.Chunk{Size: uint64(r.length)})
			results = append(results, nil)
			if err := hashZeros(h, r.length); err != nil {
				return err
			}
			size += uint64(r.length)
			continue
		}
		var src io.Reader = io.NewSectionReader(f, r.offset, r.length)
		if i == len(regions)-1 {
			// The last region reads on to the end, so a file that
			// grows while being read is stored whole (and reported).
			src = &offsetReader{f: f, off: r.offset}
		}
		n, err := p.chunkInto(ch, io.TeeReader(src, h), &content, &results)
		size += n
		if err != nil {
			p.waitAll(results)
			p.skip(j, err)
			return nil
		}
	}
	if err := p.collect(content, results); err != nil {
		return err
	}
	if testHookAfterRead != nil {
		testHookAfterRead(j.path)
	}
	after, err := fstat(f)
	if err == nil && (after.Size != before.Size || after.Mtim != before.Mtim || after.Ctim != before.Ctim || uint64(after.Size) != size) {
		p.warn.add("%s: changed while being read (size %d before, %d after, %d read)", j.path, before.Size, after.Size, size)
	}
	n.Content = content
	n.Size = size
	n.FileHash = blob.ID(h.Sum(nil))
	return nil
}

// testHookAfterRead, set only by tests, runs after a file's contents were
// read and before its metadata is compared with the state before.
var testHookAfterRead func(path string)

// readStream stores a stream (stdin, a tar entry) as the contents of n.
func (p *pipeline) readStream(ch *chunker.Chunker, r io.Reader, n *tree.Node, name string) error {
	h := sha256.New()
	var content []tree.Chunk
	var results []chan chunkResult
	size, err := p.chunkInto(ch, io.TeeReader(r, h), &content, &results)
	if err != nil {
		p.waitAll(results)
		return fmt.Errorf("backup: read %s: %w", name, err)
	}
	if err := p.collect(content, results); err != nil {
		return err
	}
	n.Content, n.Size, n.FileHash = content, size, blob.ID(h.Sum(nil))
	return nil
}

func (p *pipeline) skip(j fileJob, err error) {
	p.warn.add("%s: %v", j.path, err)
	if j.changed {
		p.skippedChanged.Add(1)
	} else {
		p.skippedNew.Add(1)
	}
	j.f.skip = true
}

// chunkInto cuts r into chunks and queues each for storing, appending a
// placeholder chunk and its result channel per chunk.
func (p *pipeline) chunkInto(ch *chunker.Chunker, r io.Reader, content *[]tree.Chunk, results *[]chan chunkResult) (uint64, error) {
	ch.Reset(r)
	var size uint64
	for {
		var buf *[]byte
		select {
		case buf = <-p.bufs:
		case <-p.ctx.Done():
			return size, p.ctx.Err()
		}
		if cap(*buf) == 0 {
			*buf = make([]byte, 0, p.chunkBufSize())
		}
		data, err := ch.Next(*buf)
		if errors.Is(err, io.EOF) {
			p.bufs <- buf
			return size, nil
		}
		if err != nil {
			p.bufs <- buf
			return size, err
		}
		*buf = data
		n := uint64(len(data))
		size += n
		p.bytesRead.Add(n)
		p.o.Progress.BytesRead.Add(n)
		res := make(chan chunkResult, 1)
		select {
		case p.blobs <- blobJob{buf: buf, res: res}:
		case <-p.ctx.Done():
			p.bufs <- buf
			return size, p.ctx.Err()
		}
		*content = append(*content, tree.Chunk{Size: n})
		*results = append(*results, res)
	}
}

// collect waits for every queued chunk and fills in the IDs.
func (p *pipeline) collect(content []tree.Chunk, results []chan chunkResult) error {
	for i, res := range results {
		if res == nil {
			continue
		}
		select {
		case r := <-res:
			if r.err != nil {
				return r.err
			}
			content[i].ID = r.id
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
	}
	return nil
}

func (p *pipeline) waitAll(results []chan chunkResult) {
	for _, res := range results {
		if res != nil {
			select {
			case <-res:
			case <-p.ctx.Done():
				return
			}
		}
	}
}

// errReplaced is why a file is skipped that is no longer, at its open,
// the regular file the walker listed.
var errReplaced = errors.New("replaced since it was listed (not the regular file it was): not read; the next backup reads what is there then")

// sameFile reports whether st, the stat of the file opened for n, is the
// regular file the walker's lstat gave n.
func sameFile(n *tree.Node, st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Ino == n.Inode && st.Dev == n.DeviceID
}

// testHookBeforeOpen, set only by tests, runs before the walker opens a
// file or directory it listed, or reads a symbolic link.
var testHookBeforeOpen func(path string)

func fstat(f *os.File) (*unix.Stat_t, error) {
	st := new(unix.Stat_t)
	if err := unix.Fstat(int(f.Fd()), st); err != nil {
		return nil, err
	}
	return st, nil
}

type region struct {
	offset, length int64
	hole           bool
}

// minHole is the smallest hole recorded as a hole; smaller ones are read
// (as zeros) with the data around them.
const minHole = 64 << 10

// dataRegions splits a file into data and hole regions with
// SEEK_DATA/SEEK_HOLE when it has fewer blocks than its size suggests;
// otherwise it is one data region.
func dataRegions(f *os.File, st *unix.Stat_t) []region {
	size := st.Size
	whole := []region{{offset: 0, length: size}}
	if size == 0 || st.Blocks*512 >= size {
		return whole
	}
	fd := int(f.Fd())
	var out []region
	var pos int64
	for pos < size {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if err != nil || data >= size {
			data = size // ENXIO: only a hole remains
		}
		if data > pos {
			out = appendRegion(out, region{offset: pos, length: data - pos, hole: true})
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		out = appendRegion(out, region{offset: data, length: hole - data})
		pos = hole
	}
	if len(out) == 0 || out[len(out)-1].hole {
		// The last region must be data so that growth is read.
		out = append(out, region{offset: size, length: 0})
	}
	return out
}

// appendRegion appends r, turning holes smaller than minHole into data and
// merging neighbouring data regions.
func appendRegion(out []region, r region) []region {
	if r.hole && r.length < minHole {
		r.hole = false
	}
	if len(out) > 0 {
		last := &out[len(out)-1]
		if !last.hole && !r.hole && last.offset+last.length == r.offset {
			last.length += r.length
			return out
		}
	}
	return append(out, r)
}

var zeros = make([]byte, 1<<20)

func hashZeros(h hash.Hash, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		h.Write(zeros[:k])
		n -= k
	}
	return nil
}

// offsetReader reads a file from off on, to its end.
type offsetReader struct {
	f   *os.File
	off int64
}

func (r *offsetReader) Read(p []byte) (int, error) {
	n, err := r.f.ReadAt(p, r.off)
	r.off += int64(n)
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil
	}
	return n, err
}
