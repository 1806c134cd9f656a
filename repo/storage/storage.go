// Package storage is the narrow interface between the repository and the
// place its files live: put, get, list and delete of named, immutable
// objects. [Local] keeps them in a directory; [S3] in a bucket of an
// S3-compatible object store, in the same layout under a key prefix
// ([ParseS3URL] reads its location, [LoadS3Credentials] its keys).
//
// # Durability
//
// [Backend.Put] returns only once the object is durable under its final
// name. [Local] writes it under a temporary name, syncs, renames and
// syncs the directory; a crash part-way leaves at most a temporary file,
// which [Local.CleanTemp] removes. [S3] relies on the store making an
// object visible whole or not at all; a crash part-way leaves at most an
// incomplete multipart upload, which [S3.CleanUploads] aborts. Neither
// ever leaves a partial object under its final name.
//
// # Concurrency
//
// A Backend is safe for concurrent use. It does not lock anything: the
// repository above it is the only writer. [S3] also states its memory
// bound and its timeouts and retries.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Kind is a class of object; each kind lives in its own namespace.
type Kind string

// The kinds of object a repository stores.
const (
	Config   Kind = "config"
	Keys     Kind = "keys"
	Packs    Kind = "packs"
	Snapshot Kind = "snapshots"
	Drills   Kind = "drills"
)

// Kinds lists every kind, in the order Init creates them.
var Kinds = []Kind{Config, Keys, Packs, Snapshot, Drills}

// Handle names one object.
type Handle struct {
	Kind Kind
	Name string
}

func (h Handle) String() string {
	if h.Kind == Config {
		return string(Config)
	}
	return string(h.Kind) + "/" + h.Name
}

// File is an object opened for random reads.
type File interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Backend stores named objects.
type Backend interface {
	// Put stores the object h with the contents of r. It fails if h
	// exists already: objects are immutable.
	Put(ctx context.Context, h Handle, r io.Reader) error
	// Open opens h for reading. A missing object gives an error wrapping
	// [ErrNotExist].
	Open(ctx context.Context, h Handle) (File, error)
	// List calls fn with the name and size of every object of kind k,
	// in no particular order, until fn returns an error.
	List(ctx context.Context, k Kind, fn func(name string, size int64) error) error
	// Delete removes h. Deleting a missing object is not an error.
	Delete(ctx context.Context, h Handle) error
}

// ErrNotExist is wrapped by errors for objects that do not exist.
var ErrNotExist = errors.New("object does not exist")

// ErrExist is wrapped by Put's error when the object exists already.
var ErrExist = errors.New("object exists already")

// ReadAll reads a whole object of at most limit bytes.
func ReadAll(ctx context.Context, b Backend, h Handle, limit int64) ([]byte, error) {
	f, err := b.Open(ctx, h)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes is more than the limit of %d", h, f.Size(), limit)
	}
	buf := make([]byte, f.Size())
	if _, err := f.ReadAt(buf, 0); err != nil && !(errors.Is(err, io.EOF) && len(buf) == 0) {
		return nil, fmt.Errorf("%s: read: %w", h, err)
	}
	return buf, nil
}
