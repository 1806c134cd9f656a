package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/cairnbackup/cairn/repo/internal/durable"
)

// TempPrefix starts the name of every temporary file a [Local] writes.
const TempPrefix = ".tmp-"

// Local keeps objects in a directory, in the layout of DESIGN.md: packs
// under packs/<first two hex digits>/<name>, other kinds under
// <kind>/<name>, the config as the file config.
type Local struct {
	dir string
	// madeDirs caches pack subdirectories known to exist.
	madeDirs sync.Map
}

// NewLocal returns a backend over dir, which must exist.
func NewLocal(dir string) *Local {
	return &Local{dir: dir}
}

// Dir is the directory the backend stores its objects in.
func (l *Local) Dir() string { return l.dir }

// Path returns the file path of h.
func (l *Local) Path(h Handle) string {
	switch h.Kind {
	case Config:
		return filepath.Join(l.dir, "config")
	case Packs:
		if len(h.Name) >= 2 {
			return filepath.Join(l.dir, "packs", h.Name[:2], h.Name)
		}
	}
	return filepath.Join(l.dir, string(h.Kind), h.Name)
}

func (l *Local) check(h Handle) error { return checkHandle(h) }

// checkHandle refuses names that are not a single path segment, and
// the names of temporary files.
func checkHandle(h Handle) error {
	if h.Kind == Config {
		return nil
	}
	if h.Name == "" || strings.ContainsAny(h.Name, "/\x00") || h.Name == "." || h.Name == ".." || strings.HasPrefix(h.Name, TempPrefix) {
		return fmt.Errorf("storage: invalid name %q", h.Name)
	}
	if h.Kind == Packs && len(h.Name) < 2 {
		return fmt.Errorf("storage: invalid pack name %q", h.Name)
	}
	return nil
}

// Init creates the directories of every kind.
func (l *Local) Init() error {
	for _, k := range Kinds {
		if k == Config {
			continue
		}
		if err := os.MkdirAll(filepath.Join(l.dir, string(k)), 0o700); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
	}
	if err := durable.SyncDir(l.dir); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// Put implements [Backend].
func (l *Local) Put(ctx context.Context, h Handle, r io.Reader) error {
	return l.store(ctx, h, r, false)
}

// Replace stores r as h like Put, but replaces an object already there
// (rename, not link): the name holds the old object or the new one,
// never neither, whenever the process dies. Only repairs use it, to put
// a verified copy in place of a damaged object.
func (l *Local) Replace(ctx context.Context, h Handle, r io.Reader) error {
	return l.store(ctx, h, r, true)
}

// store writes r to a synced temporary file beside h's name, then gives
// it the name: for Put by a link, which fails if the name exists, so a
// concurrent Put of the same name can never replace an object; for
// Replace by a rename. Put makes a pack's directory the first time.
func (l *Local) store(ctx context.Context, h Handle, r io.Reader, replace bool) error {
	verb, name := "put", durable.Link
	if replace {
		verb, name = "replace", durable.Rename
	}
	if err := l.check(h); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	final := l.Path(h)
	dir := filepath.Dir(final)
	if !replace {
		if err := l.packDir(h, dir); err != nil {
			return err
		}
		if _, err := os.Lstat(final); err == nil {
			return fmt.Errorf("storage: put %s: %w", h, ErrExist)
		}
	}
	tmp, err := writeTemp(dir, r, h)
	if err != nil {
		return fmt.Errorf("storage: %s %s: %w", verb, h, err)
	}
	if !replace {
		crashpoint.Hit("storage-before-rename")
	}
	if err := name(tmp, final); err != nil {
		if durable.IsLinkError(err) {
			os.Remove(tmp)
		}
		if errors.Is(err, fs.ErrExist) && !replace {
			return fmt.Errorf("storage: put %s: %w", h, ErrExist)
		}
		return fmt.Errorf("storage: %s %s: %w", verb, h, err)
	}
	if !replace {
		crashpoint.Hit("storage-after-rename")
	}
	return nil
}

// packDir makes dir, the directory of pack h, durably the first time a
// pack goes there.
func (l *Local) packDir(h Handle, dir string) error {
	if h.Kind != Packs {
		return nil
	}
	if _, ok := l.madeDirs.Load(dir); ok {
		return nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("storage: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	l.madeDirs.Store(dir, true)
	return nil
}

// writeTemp writes r, synced, to a new temporary file in dir and returns
// its name; on error nothing is left behind.
func writeTemp(dir string, r io.Reader, h Handle) (string, error) {
	return durable.WriteTemp(dir, TempPrefix, func(f *os.File) error {
		if h.Kind == Packs && crashpoint.Armed("storage-half-written") {
			// Test hook: write half of the object, make it durable, and
			// die, leaving a temporary file as a real crash would.
			data, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			f.Write(data[:len(data)/2])
			f.Sync()
			crashpoint.Hit("storage-half-written")
			// Not this pack's turn (a count names a later one): write
			// the rest, so the object is whole.
			r = bytes.NewReader(data[len(data)/2:])
		}
		_, err := io.Copy(f, r)
		return err
	})
}

type localFile struct {
	*os.File
	size int64
}

func (f *localFile) Size() int64 { return f.size }

// Open implements [Backend].
func (l *Local) Open(ctx context.Context, h Handle) (File, error) {
	if err := l.check(h); err != nil {
		return nil, err
	}
	f, err := os.Open(l.Path(h))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("storage: open %s: %w", h, ErrNotExist)
		}
		return nil, fmt.Errorf("storage: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("storage: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("storage: open %s: not a regular file", h)
	}
	return &localFile{File: f, size: st.Size()}, nil
}

// List implements [Backend]. Temporary files are not listed.
func (l *Local) List(ctx context.Context, k Kind, fn func(name string, size int64) error) error {
	if k == Config {
		st, err := os.Stat(l.Path(Handle{Kind: Config}))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		return fn("config", st.Size())
	}
	dirs := []string{filepath.Join(l.dir, string(k))}
	if k == Packs {
		subs, err := os.ReadDir(dirs[0])
		if err != nil {
			return fmt.Errorf("storage: list %s: %w", k, err)
		}
		dirs = dirs[:0]
		for _, s := range subs {
			if s.IsDir() && len(s.Name()) == 2 {
				dirs = append(dirs, filepath.Join(l.dir, string(k), s.Name()))
			}
		}
	}
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("storage: list %s: %w", k, err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), TempPrefix) || !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted while listing
				}
				return fmt.Errorf("storage: list %s: %w", k, err)
			}
			if err := fn(e.Name(), info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements [Backend].
func (l *Local) Delete(ctx context.Context, h Handle) error {
	if err := l.check(h); err != nil {
		return err
	}
	err := os.Remove(l.Path(h))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(l.Path(h))); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// CleanTemp removes temporary files left by writes that never finished
// (a crash or kill part-way through Put) and returns their paths. Call it
// only while holding the repository lock: no Put may be running.
func (l *Local) CleanTemp() ([]string, error) {
	var removed []string
	err := filepath.WalkDir(l.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != l.dir && filepath.Base(p) == "index" && filepath.Dir(p) == l.dir {
			return fs.SkipDir // badger's own files
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), TempPrefix) {
			if err := os.Remove(p); err != nil {
				return err
			}
			removed = append(removed, p)
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("storage: clean temporary files: %w", err)
	}
	return removed, nil
}
