// Package durable is the one way cairn writes a file that must survive a
// crash: into a new temporary file beside its final name, synced, then
// given its name by a hard link (never replacing a file there) or a
// rename (replacing one), then the directory synced. A crash at any
// moment leaves the final name absent, or complete with the old or the
// new contents; at worst a temporary file stays behind, named by the
// caller's prefix so the caller can find and remove it.
//
// storage.Local writes every object of a directory repository this way,
// and repo writes key files this way. [SyncDir] is the one directory
// fsync.
package durable

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// CreateTemp creates a new file, mode 0600, in dir, named prefix followed
// by 16 random hex digits (from crypto/rand).
func CreateTemp(dir, prefix string) (*os.File, error) {
	var b [8]byte
	rand.Read(b[:])
	return os.OpenFile(filepath.Join(dir, prefix+hex.EncodeToString(b[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
}

// WriteTemp writes a new temporary file in dir (named as by [CreateTemp])
// with write, syncs and closes it, and returns its path. On error
// nothing is left behind.
func WriteTemp(dir, prefix string, write func(f *os.File) error) (string, error) {
	f, err := CreateTemp(dir, prefix)
	if err != nil {
		return "", err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// Link gives the temporary file tmp the name final, which must not exist
// (the error then matches [fs.ErrExist]), removes tmp and syncs final's
// directory. An error of the link itself is an [*os.LinkError] and
// leaves tmp in place for the caller; after the link, final holds the
// file whatever else fails.
func Link(tmp, final string) error {
	if err := os.Link(tmp, final); err != nil {
		return err
	}
	if err := os.Remove(tmp); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(final))
}

// Rename gives the temporary file tmp the name final, replacing a file
// there, and syncs final's directory. An error of the rename itself is
// an [*os.LinkError] and leaves tmp in place for the caller.
func Rename(tmp, final string) error {
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(final))
}

// SyncDir makes the entries of directory dir (names created, linked,
// renamed or removed in it) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// IsLinkError reports whether err is the failure of the link or rename
// itself in [Link] or [Rename], which leaves the temporary file.
func IsLinkError(err error) bool {
	var le *os.LinkError
	return errors.As(err, &le)
}
