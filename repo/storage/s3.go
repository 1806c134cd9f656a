package storage

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"iter"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sync/errgroup"

	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
)

// S3 keeps objects in a bucket of an S3-compatible object store (AWS S3,
// SeaweedFS, MinIO, Ceph RGW, Garage, Backblaze B2, Wasabi), in the
// layout of [Local] under the location's prefix: PREFIX/config,
// PREFIX/keys/<name>, PREFIX/packs/<first two characters>/<name>,
// PREFIX/snapshots/<name>, PREFIX/drills/<name>.
//
// # Durability and immutability
//
// Put returns once the store has acknowledged the whole object under its
// final name; S3 makes an object visible whole or not at all. Objects up
// to [S3Options.PartSize] go up in one PUT; larger ones (full packs) as a
// multipart upload, which the store assembles only at the final
// CompleteMultipartUpload. A Put that fails or is cancelled aborts its
// upload; one killed part-way leaves an incomplete upload, never an
// object, which [S3.CleanUploads] aborts later. Every PUT carries a
// checksum of its body (a CRC-32C for packs, the Content-MD5 for other
// objects: [bodySum]), so the store refuses bytes damaged on the way
// (the request is sent again); the payload itself is not signed
// (UNSIGNED-PAYLOAD, as minio-go does over HTTPS): signing every 64 KiB
// chunk cost half the throughput of a store on the same two cores.
//
// Put never replaces an object: the PUT and the CompleteMultipartUpload
// carry If-None-Match: *, and a store that refuses them with 412 makes
// Put fail with [ErrExist]. For stores that ignore the condition, Put of
// every kind but packs first asks whether the object exists (a HEAD);
// packs skip that request, as they are named by the hash of their
// contents and a second Put would store the same bytes. A Put whose
// answer was lost, sent again and refused, succeeds if the object there
// has the ETag or checksum its bytes give (it stored it itself).
//
// # Failures
//
// Every request ends when no data moves for [S3Options.Timeout] or after
// [S3Options.MaxRequestDuration]. A request that fails in a way that can
// pass (5xx, 408, 429, throttling, a refused, reset or stalled
// connection) is sent again after a growing, randomised wait, up to
// [S3Options.Attempts] times in all; this backend does that for every
// request, and minio-go's own retries are switched off, so the two never
// multiply. A ranged read that breaks off mid-body resumes where it
// stopped; a store that answers with other bytes than those asked for
// (another Content-Range) is an error, not retried. Every error names the object as a URL (endpoint, bucket, key)
// and never contains the secret key or session token.
//
// # Concurrency and memory
//
// An S3 is safe for concurrent use, as are the [File]s it opens. It takes
// no lock: the repository above it is the only writer. Reads go straight
// into the caller's buffer; Put of a [bytes.Reader] (what the repository
// passes) copies nothing, other readers are read into at most
// PartConcurrency+1 buffers of PartSize. Up to PartConcurrency parts of
// one upload are in flight. The sizes of objects it stored, opened or
// listed are cached (at most 16384, about 2 MiB), so opening them again
// costs no request.
type S3 struct {
	loc     S3Location
	core    *minio.Core
	opts    S3Options
	secrets []string // scrubbed from every error message
	sizes   sizeCache
}

// S3Options tunes an [S3] backend; zero fields take the defaults.
type S3Options struct {
	// Timeout ends a request that sends and receives nothing for this
	// long, and bounds connecting (default 1 minute).
	Timeout time.Duration
	// MaxRequestDuration ends any request that runs longer (default 15
	// minutes), whatever it moves.
	MaxRequestDuration time.Duration
	// Attempts bounds how often one request is sent, the first time
	// included (default 8).
	Attempts int
	// RetryDelay is about the wait before the second attempt; each later
	// wait doubles, up to MaxRetryDelay (defaults 250 ms and 8 s: 8
	// attempts span about 20 s).
	RetryDelay, MaxRetryDelay time.Duration
	// PartSize is the size of the parts of a multipart upload, at least 5
	// MiB (S3's minimum); larger objects go up in parts (default 8 MiB).
	PartSize int64
	// PartConcurrency is how many parts of one upload are sent at once
	// (default 4).
	PartConcurrency int
	// RootCAs verifies HTTPS endpoints; nil means the system's roots.
	RootCAs *x509.CertPool
}

const minPartSize = 5 << 20

func (o S3Options) withDefaults() (S3Options, error) {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Timeout, time.Minute)
	def(&o.MaxRequestDuration, 15*time.Minute)
	def(&o.RetryDelay, 250*time.Millisecond)
	def(&o.MaxRetryDelay, 8*time.Second)
	if o.Attempts <= 0 {
		o.Attempts = 8
	}
	if o.PartSize == 0 {
		o.PartSize = 8 << 20
	}
	if o.PartConcurrency <= 0 {
		o.PartConcurrency = 4
	}
	if o.PartSize < minPartSize || o.PartSize > 5<<30 {
		return o, fmt.Errorf("part size %d is outside 5 MiB to 5 GiB", o.PartSize)
	}
	return o, nil
}

// NewS3 returns a backend for the bucket and prefix of loc, signing with
// creds, and checks that the bucket exists and that creds may reach it.
func NewS3(ctx context.Context, loc S3Location, creds S3Credentials, opts S3Options) (*S3, error) {
	s, err := newS3(loc, creds, opts)
	if err != nil {
		return nil, err
	}
	var exists bool
	n, err := s.retry(ctx, func(ctx context.Context) (err error) {
		exists, err = s.core.BucketExists(ctx, loc.Bucket)
		return err
	})
	if err == nil && !exists {
		err = minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: http.StatusNotFound, BucketName: loc.Bucket}
	}
	if err != nil {
		return nil, s.fail("open", "", n, err)
	}
	return s, nil
}

// newS3 is NewS3 without the check of the bucket.
func newS3(loc S3Location, creds S3Credentials, opts S3Options) (*S3, error) {
	if err := creds.Check(); err != nil {
		return nil, fmt.Errorf("storage: %s: S3 credentials: %w", loc, err)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("storage: %s: %w", loc, err)
	}
	core, err := minio.NewCore(loc.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken),
		Secure:     loc.Secure,
		Transport:  newHTTPTransport(loc.Secure, opts.RootCAs, opts.Timeout, opts.MaxRequestDuration),
		MaxRetries: 1, // this backend retries (see retry)
	})
	if err != nil {
		return nil, fmt.Errorf("storage: %s: %w", loc, err)
	}
	s := &S3{loc: loc, core: core, opts: opts, sizes: sizeCache{m: map[string]int64{}}}
	for _, v := range []string{creds.SecretAccessKey, creds.SessionToken} {
		if v != "" {
			s.secrets = append(s.secrets, v)
		}
	}
	return s, nil
}

// Location is where the backend stores its objects.
func (s *S3) Location() S3Location { return s.loc }

// Key returns the key of h in the bucket.
func (s *S3) Key(h Handle) string {
	var k string
	switch h.Kind {
	case Config:
		k = string(Config)
	case Packs:
		k = "packs/" + h.Name[:min(2, len(h.Name))] + "/" + h.Name
	default:
		k = string(h.Kind) + "/" + h.Name
	}
	return s.prefixed(k)
}

func (s *S3) prefixed(k string) string {
	if s.loc.Prefix == "" {
		return k
	}
	return s.loc.Prefix + "/" + k
}

// Put implements [Backend]; see [S3] for how it stays immutable.
func (s *S3) Put(ctx context.Context, h Handle, r io.Reader) error {
	return s.put(ctx, "put", h, r, true)
}

// Replace stores r as h like Put, but replaces an object already there:
// the key holds the old object or the new one, never neither, whenever
// the process dies. Only repairs use it, as with [Local.Replace].
func (s *S3) Replace(ctx context.Context, h Handle, r io.Reader) error {
	return s.put(ctx, "replace", h, r, false)
}

// lenReaderAt is what bytes.Reader and strings.Reader offer: the unread
// part can be sent, and sent again, without copying.
type lenReaderAt interface {
	io.ReaderAt
	Size() int64
	Len() int
}

func (s *S3) put(ctx context.Context, op string, h Handle, r io.Reader, exclusive bool) error {
	if err := checkHandle(h); err != nil {
		return err
	}
	key := s.Key(h)
	if exclusive && h.Kind != Packs {
		n, err := s.stat(ctx, key)
		if err == nil {
			return s.fail(op, key, n, ErrExist)
		}
		if !errors.Is(err, ErrNotExist) {
			return s.fail(op, key, n, err)
		}
	}
	var (
		n    int
		err  error
		size int64
	)
	if !exclusive {
		s.sizes.drop(key)
	}
	if lr, ok := r.(lenReaderAt); ok {
		start := lr.Size() - int64(lr.Len())
		size = int64(lr.Len())
		if size <= s.opts.PartSize {
			n, err = s.putSingle(ctx, key, io.NewSectionReader(lr, start, size), exclusive, h.Kind)
		} else {
			n, err = s.putMultipart(ctx, key, sections(lr, start, size, s.opts.PartSize), s.opts.PartConcurrency, exclusive, h.Kind)
		}
	} else {
		n, size, err = s.putStream(ctx, key, r, exclusive, h.Kind)
	}
	if err != nil {
		return s.fail(op, key, n, err)
	}
	s.sizes.put(key, size)
	return nil
}

// sections splits size bytes of r from start into parts of partSize.
func sections(r io.ReaderAt, start, size, partSize int64) iter.Seq2[*io.SectionReader, error] {
	return func(yield func(*io.SectionReader, error) bool) {
		for off := int64(0); off < size; off += partSize {
			if !yield(io.NewSectionReader(r, start+off, min(partSize, size-off)), nil) {
				return
			}
		}
	}
}

// putStream stores a reader of unknown length: one PUT if it ends within
// a part, else a multipart upload of parts read one after the other.
func (s *S3) putStream(ctx context.Context, key string, r io.Reader, exclusive bool, kind Kind) (attempts int, size int64, err error) {
	br := bufio.NewReader(r)
	readPart := func() ([]byte, error) {
		buf := make([]byte, s.opts.PartSize)
		n, err := io.ReadFull(br, buf)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = nil
		}
		return buf[:n], err
	}
	first, err := readPart()
	if err != nil {
		return 0, 0, fmt.Errorf("read: %w", err)
	}
	if _, err := br.Peek(1); err == io.EOF {
		attempts, err = s.putSingle(ctx, key, io.NewSectionReader(bytesReaderAt(first), 0, int64(len(first))), exclusive, kind)
		return attempts, int64(len(first)), err
	} else if err != nil {
		return 0, 0, fmt.Errorf("read: %w", err)
	}
	parts := func(yield func(*io.SectionReader, error) bool) {
		part := first
		for len(part) > 0 {
			size += int64(len(part))
			if !yield(io.NewSectionReader(bytesReaderAt(part), 0, int64(len(part))), nil) {
				return
			}
			var err error
			if part, err = readPart(); err != nil {
				yield(nil, fmt.Errorf("read: %w", err))
				return
			}
		}
	}
	attempts, err = s.putMultipart(ctx, key, parts, 1, exclusive, kind)
	return attempts, size, err
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// putOptions: the payload is not signed (UNSIGNED-PAYLOAD, what
// minio-go sends over HTTPS anyway): streaming SHA-256 signatures halved
// the throughput of a store on the same two cores. A checksum of the
// body guards the bytes instead (see [bodySum]): the store refuses a
// body that does not match (BadDigest, which is retried).
func putOptions(exclusive bool) minio.PutObjectOptions {
	o := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true}
	if exclusive {
		o.SetMatchETagExcept("*") // If-None-Match: *
	}
	return o
}

// bodySum guards one request body on its way to the store. Packs carry
// a CRC-32C (x-amz-checksum-crc32c, computed in hardware: the Content-MD5
// of every pack was 8 % of a first backup's CPU), what minio-go itself
// adds to every upload; a write sent again and refused because the pack
// exists recognises its own earlier attempt by the stored checksum. Every
// other object carries a Content-MD5, which is also its ETag, and is
// recognised by that (see [S3.existing]). One of the two is set.
type bodySum struct {
	md5 []byte // Content-MD5, for objects other than packs
	crc []byte // CRC-32C, big-endian, for packs
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func sumBody(r *io.SectionReader, kind Kind) (bodySum, error) {
	var h hash.Hash
	if kind == Packs {
		h = crc32.New(castagnoli)
	} else {
		h = md5.New()
	}
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, r.Size())); err != nil {
		return bodySum{}, fmt.Errorf("read: %w", err)
	}
	if kind == Packs {
		return bodySum{crc: h.Sum(nil)}, nil
	}
	return bodySum{md5: h.Sum(nil)}, nil
}

// contentMD5 is the Content-MD5 header's value; "" for a CRC-guarded body.
func (b bodySum) contentMD5() string {
	if b.md5 == nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b.md5)
}

// crcBase64 is the x-amz-checksum-crc32c header's value; "" for an
// MD5-guarded body.
func (b bodySum) crcBase64() string {
	if b.crc == nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b.crc)
}

// header is the checksum header of a CRC-guarded body; nil otherwise.
func (b bodySum) header() http.Header {
	if b.crc == nil {
		return nil
	}
	return http.Header{checksumCRC32C: {b.crcBase64()}}
}

const (
	checksumCRC32C    = "X-Amz-Checksum-Crc32c"
	checksumAlgorithm = "X-Amz-Checksum-Algorithm"
)

func (s *S3) putSingle(ctx context.Context, key string, body *io.SectionReader, exclusive bool, kind Kind) (int, error) {
	opts := putOptions(exclusive)
	sum, err := sumBody(body, kind)
	if err != nil {
		return 0, err
	}
	if sum.crc != nil {
		opts.UserMetadata = map[string]string{checksumCRC32C: sum.crcBase64()}
	}
	n, err := s.retry(ctx, func(ctx context.Context) error {
		_, err := s.core.PutObject(ctx, s.loc.Bucket, key, io.NewSectionReader(body, 0, body.Size()),
			body.Size(), sum.contentMD5(), "", opts)
		return err
	})
	if isPreconditionFailed(err) {
		return n, s.existing(ctx, key, n, sum.own)
	}
	return n, err
}

// own reports whether an object stored by one PUT of the body is info:
// its ETag is the body's MD5, its checksum the body's CRC-32C.
func (b bodySum) own(info minio.ObjectInfo) bool {
	if b.md5 != nil {
		return strings.EqualFold(strings.Trim(info.ETag, `"`), hex.EncodeToString(b.md5))
	}
	return info.ChecksumCRC32C == b.crcBase64()
}

// partSums are the sums of a multipart upload's parts by part number.
type partSums map[int]bodySum

// own reports whether the object of a multipart upload of these parts
// is info: its ETag is the MD5 of the parts' MD5s and "-N" for N parts,
// its checksum the CRC-32C of the parts' CRC-32Cs and "-N" (S3's
// composite checksum).
func (ps partSums) own(info minio.ObjectInfo) bool {
	var md, crc hash.Hash = md5.New(), crc32.New(castagnoli)
	for num := 1; num <= len(ps); num++ {
		b, ok := ps[num]
		if !ok {
			return false
		}
		md.Write(b.md5)
		crc.Write(b.crc)
	}
	if ps[1].md5 != nil {
		return strings.EqualFold(strings.Trim(info.ETag, `"`), fmt.Sprintf("%x-%d", md.Sum(nil), len(ps)))
	}
	return info.ChecksumCRC32C == fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(crc.Sum(nil)), len(ps))
}

// existing is the result of a conditional write refused because key
// exists. If the write was sent more than once, the object may be its
// own, stored by an attempt whose answer was lost: an object whose ETag
// or checksum is what the write would have given is (see [bodySum.own]
// and [partSums.own]), and the write succeeded. Otherwise the error
// wraps ErrExist.
func (s *S3) existing(ctx context.Context, key string, attempts int, own func(minio.ObjectInfo) bool) error {
	if attempts > 1 {
		var info minio.ObjectInfo
		_, err := s.retry(ctx, func(ctx context.Context) (err error) {
			info, err = s.core.StatObject(ctx, s.loc.Bucket, key, minio.StatObjectOptions{Checksum: true})
			return err
		})
		if err == nil && own(info) {
			return nil
		}
	}
	return ErrExist
}

// putMultipart uploads parts as one multipart upload and completes it;
// on any error it aborts the upload. It returns the most attempts one
// request took.
func (s *S3) putMultipart(ctx context.Context, key string, parts iter.Seq2[*io.SectionReader, error], concurrency int, exclusive bool, kind Kind) (attempts int, err error) {
	var uploadID string
	start := putOptions(false)
	if kind == Packs {
		// The parts carry CRC-32Cs: a store checks them only for an
		// upload begun with their algorithm.
		start.UserMetadata = map[string]string{checksumAlgorithm: "CRC32C"}
	}
	attempts, err = s.retry(ctx, func(ctx context.Context) (err error) {
		uploadID, err = s.core.NewMultipartUpload(ctx, s.loc.Bucket, key, start)
		return err
	})
	if err != nil {
		return attempts, &stepError{"start multipart upload", err}
	}
	defer func() {
		if err == nil {
			return
		}
		// Abort even when ctx is cancelled: an interrupted Put must
		// not leave its parts behind.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Timeout)
		defer cancel()
		if _, aerr := s.retry(actx, func(ctx context.Context) error {
			return s.core.AbortMultipartUpload(ctx, s.loc.Bucket, key, uploadID)
		}); aerr != nil && !isNoSuchUpload(aerr) {
			err = &abortError{err: err, abort: aerr}
		}
	}()

	var (
		mu        sync.Mutex
		completed []minio.CompletePart
		sums      = partSums{}
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	number := 0
	for part, rerr := range parts {
		if rerr != nil {
			g.Wait()
			return attempts, rerr
		}
		if gctx.Err() != nil {
			break
		}
		number++
		num := number
		g.Go(func() error {
			sum, err := sumBody(part, kind)
			if err != nil {
				return err
			}
			var p minio.ObjectPart
			n, err := s.retry(gctx, func(ctx context.Context) (err error) {
				p, err = s.core.PutObjectPart(ctx, s.loc.Bucket, key, uploadID, num,
					io.NewSectionReader(part, 0, part.Size()), part.Size(),
					minio.PutObjectPartOptions{Md5Base64: sum.contentMD5(), CustomHeader: sum.header(), DisableContentSha256: true})
				return err
			})
			mu.Lock()
			defer mu.Unlock()
			attempts = max(attempts, n)
			if err != nil {
				return &stepError{fmt.Sprintf("part %d", num), err}
			}
			sums[num] = sum
			if p.ChecksumCRC32C == "" {
				p.ChecksumCRC32C = sum.crcBase64() // a store that checked it may not echo it
			}
			completed = append(completed, minio.CompletePart{
				PartNumber: num, ETag: p.ETag,
				ChecksumCRC32: p.ChecksumCRC32, ChecksumCRC32C: p.ChecksumCRC32C,
				ChecksumSHA1: p.ChecksumSHA1, ChecksumSHA256: p.ChecksumSHA256,
				ChecksumCRC64NVME: p.ChecksumCRC64NVME,
			})
			crashpoint.Hit("s3-part-stored")
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return attempts, err
	}
	if err := ctx.Err(); err != nil {
		return attempts, err
	}
	sortParts(completed)
	n, err := s.retry(ctx, func(ctx context.Context) error {
		_, err := s.core.CompleteMultipartUpload(ctx, s.loc.Bucket, key, uploadID, completed, putOptions(exclusive))
		return err
	})
	attempts = max(attempts, n)
	if isPreconditionFailed(err) {
		return attempts, s.existing(ctx, key, n, sums.own)
	}
	if err != nil {
		return attempts, &stepError{"complete multipart upload", err}
	}
	return attempts, nil
}

func sortParts(p []minio.CompletePart) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j].PartNumber < p[j-1].PartNumber; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

// stepError names the step of an upload that failed.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + describe(e.err) }
func (e *stepError) Unwrap() error { return e.err }

// abortError is a failed upload whose abort failed too.
type abortError struct{ err, abort error }

func (e *abortError) Error() string {
	return fmt.Sprintf("%s; aborting the incomplete upload failed too (CleanUploads removes it later): %s", describe(e.err), describe(e.abort))
}
func (e *abortError) Unwrap() error { return e.err }

// stat returns the size of key, or an error wrapping ErrNotExist.
func (s *S3) stat(ctx context.Context, key string) (int, error) {
	_, n, err := s.statSize(ctx, key)
	return n, err
}

func (s *S3) statSize(ctx context.Context, key string) (size int64, attempts int, err error) {
	attempts, err = s.retry(ctx, func(ctx context.Context) error {
		info, err := s.core.StatObject(ctx, s.loc.Bucket, key, minio.StatObjectOptions{})
		size = info.Size
		return err
	})
	if isNoSuchKey(err) {
		err = ErrNotExist
	}
	return size, attempts, err
}

// Open implements [Backend]. It needs the object's size: from the
// backend's cache of sizes if the object was stored, opened or listed
// through it before (objects never change), else from a HEAD. An object
// deleted by another process since it was cached opens, and its reads
// fail with [ErrNotExist]. The [File]'s reads are ranged GETs made with
// ctx, so the File must not outlive ctx.
func (s *S3) Open(ctx context.Context, h Handle) (File, error) {
	if err := checkHandle(h); err != nil {
		return nil, err
	}
	key := s.Key(h)
	size, ok := s.sizes.get(key)
	if !ok {
		var (
			n   int
			err error
		)
		size, n, err = s.statSize(ctx, key)
		if err != nil {
			return nil, s.fail("open", key, n, err)
		}
		s.sizes.put(key, size)
	}
	return &s3File{s: s, ctx: ctx, key: key, size: size}, nil
}

type s3File struct {
	s    *S3
	ctx  context.Context
	key  string
	size int64
}

func (f *s3File) Size() int64  { return f.size }
func (f *s3File) Close() error { return nil }

// ReadAt reads len(p) bytes at off with one ranged GET (resumed where it
// broke off, if it does), straight into p.
func (f *s3File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, f.s.fail("read", f.key, 0, fmt.Errorf("negative offset %d", off))
	}
	if off >= f.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := int(min(int64(len(p)), f.size-off))
	got := 0
	n, err := f.s.retry(f.ctx, func(ctx context.Context) error {
		start, end := off+int64(got), off+int64(want)-1
		var opts minio.GetObjectOptions
		if err := opts.SetRange(start, end); err != nil {
			return err
		}
		body, _, header, err := f.s.core.GetObject(ctx, f.s.loc.Bucket, f.key, opts)
		if err != nil {
			return err
		}
		defer body.Close()
		if cr := header.Get("Content-Range"); !strings.HasPrefix(cr, fmt.Sprintf("bytes %d-%d/", start, end)) {
			return &rangeError{start: start, end: end, got: cr}
		}
		m, err := io.ReadFull(body, p[got:want])
		got += m
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return fmt.Errorf("response ended after %d of %d bytes: %w", m, end-start+1, io.ErrUnexpectedEOF)
		}
		return err
	})
	if isNoSuchKey(err) {
		err = ErrNotExist
	}
	if err != nil {
		return got, f.s.fail(fmt.Sprintf("read %d bytes at %d of", want, off), f.key, n, err)
	}
	if want < len(p) {
		return want, io.EOF
	}
	return want, nil
}

// rangeError is a GET answered with other bytes than those asked for.
type rangeError struct {
	start, end int64
	got        string
}

func (e *rangeError) Error() string {
	return fmt.Sprintf("asked for bytes %d-%d, the store answered with Content-Range %q", e.start, e.end, e.got)
}

// List implements [Backend]. Keys that do not fit the layout (another
// program's objects under the prefix) are skipped.
func (s *S3) List(ctx context.Context, k Kind, fn func(name string, size int64) error) error {
	if k == Config {
		key := s.Key(Handle{Kind: Config})
		size, n, err := s.statSize(ctx, key)
		if errors.Is(err, ErrNotExist) {
			return nil
		}
		if err != nil {
			return s.fail("list", key, n, err)
		}
		return fn(string(Config), size)
	}
	prefix := s.prefixed(string(k) + "/")
	after := ""
	for attempt := 1; ; attempt++ {
		var failed error
		for obj := range s.core.ListObjectsIter(ctx, s.loc.Bucket, minio.ListObjectsOptions{
			Prefix: prefix, Recursive: true, StartAfter: after, FetchOwner: new(false),
		}) {
			if obj.Err != nil {
				failed = obj.Err
				break
			}
			after = obj.Key
			attempt = 1 // progress
			if name, ok := nameOf(k, strings.TrimPrefix(obj.Key, prefix)); ok {
				s.sizes.put(obj.Key, obj.Size)
				if err := fn(name, obj.Size); err != nil {
					return err
				}
			}
		}
		if failed == nil {
			if err := ctx.Err(); err != nil {
				return err
			}
			return nil
		}
		if attempt >= s.opts.Attempts || !retryable(ctx, failed) {
			return s.fail("list", prefix, attempt, failed)
		}
		if err := s.wait(ctx, attempt); err != nil {
			return s.fail("list", prefix, attempt, fmt.Errorf("%w (after %v)", err, failed))
		}
	}
}

// nameOf returns the object name of rel, a key relative to its kind's
// prefix: "<name>", or "<xx>/<name>" for packs.
func nameOf(k Kind, rel string) (string, bool) {
	name := rel
	if k == Packs {
		dir, n, ok := strings.Cut(rel, "/")
		if !ok || len(dir) != 2 || !strings.HasPrefix(n, dir) {
			return "", false
		}
		name = n
	}
	if checkHandle(Handle{Kind: k, Name: name}) != nil {
		return "", false
	}
	return name, true
}

// Delete implements [Backend].
func (s *S3) Delete(ctx context.Context, h Handle) error {
	if err := checkHandle(h); err != nil {
		return err
	}
	key := s.Key(h)
	s.sizes.drop(key)
	n, err := s.retry(ctx, func(ctx context.Context) error {
		return s.core.RemoveObject(ctx, s.loc.Bucket, key, minio.RemoveObjectOptions{})
	})
	if err != nil && !isNoSuchKey(err) {
		return s.fail("delete", key, n, err)
	}
	return nil
}

// CleanUploads aborts the incomplete multipart uploads under the
// location's prefix that were started more than minAge ago (by the
// store's clock, as the store reports it) and returns their keys. Such
// uploads are left by a Put that was killed, or whose abort failed; they
// are never visible as objects, but the store keeps their parts. Call it
// while holding the repository lock: with no Put running, minAge 0 is
// safe; otherwise give minAge well above the longest upload and any clock
// skew.
func (s *S3) CleanUploads(ctx context.Context, minAge time.Duration) ([]string, error) {
	prefix := s.prefixed("")
	cutoff := time.Now().Add(-minAge)
	var aborted []string
	keyMarker, idMarker := "", ""
	for {
		var res minio.ListMultipartUploadsResult
		n, err := s.retry(ctx, func(ctx context.Context) (err error) {
			res, err = s.core.ListMultipartUploads(ctx, s.loc.Bucket, prefix, keyMarker, idMarker, "", 1000)
			return err
		})
		if err != nil {
			return aborted, s.fail("list incomplete uploads under", prefix, n, err)
		}
		for _, u := range res.Uploads {
			if minAge > 0 && !u.Initiated.Before(cutoff) {
				continue
			}
			n, err := s.retry(ctx, func(ctx context.Context) error {
				return s.core.AbortMultipartUpload(ctx, s.loc.Bucket, u.Key, u.UploadID)
			})
			if err != nil && !isNoSuchUpload(err) {
				return aborted, s.fail("abort incomplete upload of", u.Key, n, err)
			}
			aborted = append(aborted, u.Key)
		}
		if !res.IsTruncated {
			return aborted, nil
		}
		if res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker {
			return aborted, s.fail("list incomplete uploads under", prefix, n, errors.New("the store's listing does not advance"))
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

// sizeCache maps keys to object sizes, for at most sizeCacheEntries
// objects (about 2 MiB); when full, an arbitrary entry makes room.
type sizeCache struct {
	mu sync.Mutex
	m  map[string]int64
}

const sizeCacheEntries = 1 << 14

func (c *sizeCache) get(key string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	size, ok := c.m[key]
	return size, ok
}

func (c *sizeCache) put(key string, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= sizeCacheEntries {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = size
}

func (c *sizeCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}

// retry runs one request until it succeeds, fails for good, or has been
// tried Attempts times, and returns how often it ran.
func (s *S3) retry(ctx context.Context, request func(context.Context) error) (int, error) {
	for attempt := 1; ; attempt++ {
		err := request(ctx)
		if err == nil || attempt >= s.opts.Attempts || !retryable(ctx, err) {
			if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
			return attempt, err
		}
		if werr := s.wait(ctx, attempt); werr != nil {
			return attempt, fmt.Errorf("%w (after %v)", werr, err)
		}
	}
}

// wait sleeps before attempt+1, or until ctx ends.
func (s *S3) wait(ctx context.Context, attempt int) error {
	t := time.NewTimer(backoff(attempt, s.opts.RetryDelay, s.opts.MaxRetryDelay))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// fail wraps err of op on key (the bucket itself if "").
func (s *S3) fail(op, key string, attempts int, err error) error {
	return &s3Error{op: op, object: s.objectURL(key), attempts: attempts, err: err, secrets: s.secrets}
}

// objectURL names key as s3[+http]://ENDPOINT/BUCKET/KEY.
func (s *S3) objectURL(key string) string {
	u := S3Location{Endpoint: s.loc.Endpoint, Secure: s.loc.Secure, Bucket: s.loc.Bucket}.String()
	if key != "" {
		u += "/" + key
	}
	return u
}

// s3Error is every error of an S3 backend.
type s3Error struct {
	op, object string
	attempts   int
	err        error
	secrets    []string
}

func (e *s3Error) Error() string {
	msg := fmt.Sprintf("storage: %s %s: %s", e.op, e.object, describe(e.err))
	if e.attempts > 1 && !errors.Is(e.err, ErrExist) {
		msg += fmt.Sprintf(" (gave up after %d attempts)", e.attempts)
	}
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, "[hidden]")
	}
	return msg
}

func (e *s3Error) Unwrap() error { return e.err }

// describe says what went wrong in words an operator can act on.
func describe(err error) string {
	er, ok := err.(minio.ErrorResponse)
	if !ok {
		return err.Error()
	}
	what := er.Message
	if what == "" {
		what = er.Code
	}
	status := ""
	if er.StatusCode != 0 {
		status = fmt.Sprintf(" (HTTP %d %s)", er.StatusCode, er.Code)
	}
	switch er.Code {
	case "NoSuchBucket":
		return fmt.Sprintf("bucket %q does not exist", er.BucketName)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidSecurity":
		return fmt.Sprintf("access denied, check the access key and secret: %s%s", what, status)
	}
	return what + status
}

// IsUnavailable reports whether err is the store not answering (or
// answering with errors) after every retry: an outage, not a mistake in
// the request.
func IsUnavailable(err error) bool {
	e, ok := errors.AsType[*s3Error](err)
	return ok && e.attempts > 1 && !errors.Is(e.err, ErrExist) && !errors.Is(e.err, ErrNotExist)
}

func errorCode(err error) (string, int) {
	if er, ok := errors.AsType[minio.ErrorResponse](err); ok {
		return er.Code, er.StatusCode
	}
	return "", 0
}

func isPreconditionFailed(err error) bool {
	code, status := errorCode(err)
	return code == "PreconditionFailed" || status == http.StatusPreconditionFailed
}

func isNoSuchKey(err error) bool {
	code, status := errorCode(err)
	return code == "NoSuchKey" || (status == http.StatusNotFound && code != "NoSuchBucket" && code != "NoSuchUpload")
}

func isNoSuchUpload(err error) bool {
	code, _ := errorCode(err)
	return code == "NoSuchUpload"
}
