package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/storage"
)

// Place is where a repository is: a directory, or a bucket and key
// prefix of an S3-compatible object store. [ParsePlace] makes one from
// what an operator writes after --repo; it is the one place that tells
// the two apart.
//
// # Files beside the repository
//
// A directory repository DIR has files of the appliance beside it, not
// in it: DIR.yaml (the appliance's configuration), DIR.host_key,
// DIR.sock (the operator socket) and by default DIR.key (the key file),
// and the runbook inside it as DIR/runbook.md. Its index and lock are in
// DIR. An object-store repository has a state directory on this machine
// instead ([Place.StateDir]) that holds the same files, named as if
// the repository were a directory called cairn in it: STATE/cairn.yaml,
// STATE/cairn.host_key, STATE/cairn.sock, STATE/cairn.key and
// STATE/runbook.md. They are not a cache: the host key and the
// configuration must survive, and the key file is a secret. Its index and
// local lock are in a cache directory instead ([DefaultCacheDir]),
// rebuilt from the bucket when lost.
type Place struct {
	dir   string              // a directory repository, as given
	s3    *storage.S3Location // an object-store repository
	state string              // object store: the state directory
}

// ParsePlace reads a repository location: s3://HOST[:PORT]/BUCKET[/PREFIX]
// (HTTPS), s3+http://HOST:PORT/BUCKET[/PREFIX] (plain HTTP), or else a
// directory. stateDir is the state directory of an object-store location
// ("" for the default, [DefaultStateDir]); a directory has none, and
// naming one is an error.
func ParsePlace(s, stateDir string) (Place, error) {
	if s == "" {
		return Place{}, errors.New("no repository location")
	}
	if IsObjectStoreURL(s) {
		l, err := storage.ParseS3URL(s)
		if err != nil {
			return Place{}, err
		}
		if stateDir == "" {
			stateDir = DefaultStateDir(l)
		}
		return Place{s3: &l, state: filepath.Clean(stateDir)}, nil
	}
	if stateDir != "" {
		return Place{}, fmt.Errorf("a state directory is only for an object-store repository; the files of directory repository %s live beside it", s)
	}
	if strings.Contains(s, "://") {
		return Place{}, fmt.Errorf("repository location %q: only s3:// and s3+http:// URLs are supported; anything else is a directory", s)
	}
	return Place{dir: s}, nil
}

// IsObjectStoreURL reports whether s names an object-store repository
// (it starts with s3:// or s3+http://).
func IsObjectStoreURL(s string) bool {
	return strings.HasPrefix(s, "s3://") || strings.HasPrefix(s, "s3+http://")
}

// DefaultStateDir is the state directory of an object-store repository
// when none is given: derived from the location alone, since the key
// file (which opens the repository, and so tells its ID) is in it.
// /var/lib/cairn/s3/ENDPOINT/BUCKET[/PREFIX] for root; for other users
// the same under $XDG_STATE_HOME/cairn (default ~/.local/state/cairn).
func DefaultStateDir(l storage.S3Location) string {
	base := "/var/lib/cairn"
	if os.Geteuid() != 0 {
		base = xdgDir("XDG_STATE_HOME", ".local/state")
	}
	p := filepath.Join(base, "s3", l.Endpoint, l.Bucket)
	if l.Prefix != "" {
		p = filepath.Join(p, filepath.FromSlash(l.Prefix))
	}
	return p
}

// DefaultCacheDir is the cache directory of the object-store repository
// with the given ID when none is given: /var/cache/cairn/ID for root;
// for other users the same under $XDG_CACHE_HOME/cairn (default
// ~/.cache/cairn).
func DefaultCacheDir(id blob.ID) string {
	base := "/var/cache/cairn"
	if os.Geteuid() != 0 {
		base = xdgDir("XDG_CACHE_HOME", ".cache")
	}
	return filepath.Join(base, id.String())
}

// DefaultReplicaCacheDir is the cache directory of the replica called
// name of the repository with the given ID when none is given:
// DefaultCacheDir(id) + "-replica-" + name. A replica has the
// repository's ID, so it needs a cache directory of its own.
func DefaultReplicaCacheDir(id blob.ID, name string) string {
	return DefaultCacheDir(id) + "-replica-" + name
}

func xdgDir(env, fallback string) string {
	if d := os.Getenv(env); filepath.IsAbs(d) {
		return filepath.Join(d, "cairn")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, fallback, "cairn")
}

// ObjectStore reports whether the repository is in an object store.
func (l Place) ObjectStore() bool { return l.s3 != nil }

// S3 returns the object-store location; ok is false for a directory.
func (l Place) S3() (loc storage.S3Location, ok bool) {
	if l.s3 == nil {
		return storage.S3Location{}, false
	}
	return *l.s3, true
}

// Dir is the directory of a directory repository, "" for an object store.
func (l Place) Dir() string { return l.dir }

// StateDir is the state directory of an object-store repository, "" for
// a directory.
func (l Place) StateDir() string { return l.state }

// String is the location as an operator writes it: the directory or the
// URL (which never holds a secret: ParsePlace refuses credentials in
// it).
func (l Place) String() string {
	if l.s3 != nil {
		return l.s3.String()
	}
	return l.dir
}

// Abs returns the location with a relative directory made absolute
// against cwd (the process's when "").
func (l Place) Abs(cwd string) Place {
	if l.s3 != nil || filepath.IsAbs(l.dir) {
		return l
	}
	if cwd == "" {
		if d, err := filepath.Abs(l.dir); err == nil {
			l.dir = d
		}
		return l
	}
	l.dir = filepath.Join(cwd, l.dir)
	return l
}

// Beside returns the path of a file that belongs beside the repository,
// named by its suffix (".yaml", ".host_key", ".sock", ".key"): DIR+suffix
// for a directory, STATE/cairn+suffix for an object store.
func (l Place) Beside(suffix string) string {
	if l.s3 != nil {
		return filepath.Join(l.state, "cairn"+suffix)
	}
	return filepath.Clean(l.dir) + suffix
}

// Within returns the path of a local file that belongs to the
// repository (the runbook): DIR/name for a directory, STATE/name for an
// object store.
func (l Place) Within(name string) string {
	if l.s3 != nil {
		return filepath.Join(l.state, name)
	}
	return filepath.Join(l.dir, name)
}

// describe names kind (or, with name, one object of it) for messages:
// a path for a directory, a URL for an object store.
func (l Place) describe(k storage.Kind, name string) string {
	if l.s3 != nil {
		s := l.s3.String() + "/" + string(k)
		if name != "" {
			s += "/" + name
		}
		return s
	}
	return filepath.Join(l.dir, string(k), name)
}

// S3Access is what an object-store repository needs besides its
// location: the credentials, and for tests the backend's tuning.
type S3Access struct {
	Credentials storage.S3Credentials
	Options     storage.S3Options
}

// backend returns the storage of the location: a [storage.Local] for a
// directory (nil error even when it does not exist yet), or an
// [storage.S3] whose bucket was found with the credentials.
func (l Place) backend(ctx context.Context, a S3Access) (storage.Backend, error) {
	if l.s3 == nil {
		return storage.NewLocal(l.dir), nil
	}
	return storage.NewS3(ctx, *l.s3, a.Credentials, a.Options)
}
