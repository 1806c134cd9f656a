package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"
)

// LockObject is the name, under the location's prefix, of the object that
// names the one process that owns an object-store repository. It is
// outside every [Kind], so no List sees it; only the repository's lock
// reads and writes it, through [S3.ReadLock] and [S3.WriteLock].
const LockObject = "lock"

// MaxLockSize bounds the lock object ReadLock accepts.
const MaxLockSize = 64 << 10

// ErrLockChanged is wrapped by WriteLock's error when the lock object is
// not the one the write was conditional on: it exists although none was
// expected, or its ETag is another, or it is gone.
var ErrLockChanged = errors.New("the lock object changed")

// ReadLock returns the lock object and its ETag, or an error wrapping
// [ErrNotExist] when there is none.
func (s *S3) ReadLock(ctx context.Context) (data []byte, etag string, err error) {
	key := s.prefixed(LockObject)
	n, err := s.retry(ctx, func(ctx context.Context) error {
		body, info, _, err := s.core.GetObject(ctx, s.loc.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer body.Close()
		if info.Size > MaxLockSize {
			return fmt.Errorf("%d bytes is more than the limit of %d", info.Size, MaxLockSize)
		}
		b, err := io.ReadAll(io.LimitReader(body, MaxLockSize+1))
		if err != nil {
			return err
		}
		if len(b) > MaxLockSize {
			return fmt.Errorf("more than the limit of %d bytes", MaxLockSize)
		}
		data, etag = b, info.ETag
		return nil
	})
	if isNoSuchKey(err) {
		err = ErrNotExist
	}
	if err != nil {
		return nil, "", s.fail("read", key, n, err)
	}
	return data, etag, nil
}

// WriteLock stores data as the lock object and returns its new ETag,
// only if the object now there has the ETag ifMatch (If-Match), or, when
// ifMatch is "", if there is none (If-None-Match: *). Otherwise it fails
// with an error wrapping [ErrLockChanged]. The store decides atomically;
// a request sent again after its answer was lost may find its own
// write and report ErrLockChanged, so callers compare what is there.
func (s *S3) WriteLock(ctx context.Context, data []byte, ifMatch string) (string, error) {
	key := s.prefixed(LockObject)
	opts := minio.PutObjectOptions{ContentType: "application/json"}
	if ifMatch == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(ifMatch)
	}
	var etag string
	n, err := s.retry(ctx, func(ctx context.Context) error {
		info, err := s.core.PutObject(ctx, s.loc.Bucket, key, bytes.NewReader(data), int64(len(data)), "", "", opts)
		etag = info.ETag
		return err
	})
	if isPreconditionFailed(err) || (ifMatch != "" && isNoSuchKey(err)) {
		err = ErrLockChanged
	}
	if err != nil {
		return "", s.fail("write", key, n, err)
	}
	return etag, nil
}

// LockURL names the lock object, for messages.
func (s *S3) LockURL() string { return s.objectURL(s.prefixed(LockObject)) }
