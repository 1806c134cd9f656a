package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/crashpoint"
	"github.com/cairnbackup/cairn/repo/internal/durable"
	"github.com/cairnbackup/cairn/repo/seal"
	"github.com/cairnbackup/cairn/repo/storage"
)

// Key kinds, as [KeyInfo] names them.
const (
	KindPassphrase = "passphrase"
	KindKeyFile    = "key file"
	KindDamaged    = "damaged"
)

// KeyInfo describes one wrapped key in keys/.
type KeyInfo struct {
	Name    string          `json:"name"`
	Kind    string          `json:"kind"` // KindPassphrase, KindKeyFile or KindDamaged
	Created time.Time       `json:"created,omitzero"`
	Argon2  *seal.KDFParams `json:"argon2id,omitempty"` // a passphrase key's costs
	Damaged string          `json:"damaged,omitempty"`  // why the file cannot be used
}

// Keyring changes the wrapped keys of a repository (keys/) on behalf of
// a caller who proved credentials that open it: a key is added only
// wrapping the master key those credentials unwrapped, and a key is
// removed only while a key the caller proved stays. It writes only
// keys/ (through the repository's [storage.Backend]) and key files
// outside the repository; it takes no repository lock and never opens
// the index, so it works beside the running appliance, which holds the
// master key in memory and never reads keys/ again.
//
// # Crash safety
//
// Every change adds before it removes, so that at every moment the old
// credential or the new one opens the repository: a new wrapped key is
// stored (and read back and opened with the new credential) before the
// old one is deleted; a new key file is written to a synced temporary
// file beside its final name, then its wrapped key is stored, then the
// temporary file is renamed (linked, for a new path) into place. Crash
// points name each step (key-file-temp, key-added, key-file-written,
// key-removed). A change killed part-way leaves at most a temporary
// file in keys/ or beside the key file and a wrapped key no file
// holds the secret of; the next change, under the same lock, removes
// both (see [Keyring.lock]).
//
// # Concurrency
//
// Changes are serialised by an flock(2) on the keys/ directory of a
// directory repository: a second change fails at once. On other
// backends changes are not serialised against each other.
type Keyring struct {
	be     storage.Backend
	dir    string // the repository, for messages and the default key file
	where  string // keys/ as messages name it
	repoID blob.ID
	master seal.MasterKey
	// proven are the wrapped keys the caller's credentials opened, or
	// that this keyring stored for a credential the caller holds.
	proven   map[string]bool
	keyFiles []string // the key files the caller proved, cleaned of leftovers at each change

	// KDF is the argon2id cost of new passphrase keys; zero means
	// seal.DefaultKDF.
	KDF seal.KDFParams
	now func() time.Time
}

// OpenKeyring proves every credential of creds against the repository
// at location (a directory or an object-store URL, with o's state
// directory and S3 access, as [Open] takes them), reusing a [ProveKey]
// proof, and returns the keyring they may change. It reads only; changes
// take the keys lock themselves.
func OpenKeyring(ctx context.Context, location string, creds []Credentials, o Options) (*Keyring, error) {
	if len(creds) == 0 {
		return nil, errors.New("keys: no credential to prove")
	}
	loc, err := ParsePlace(location, o.StateDir)
	if err != nil {
		return nil, err
	}
	be, err := loc.backend(ctx, o.S3)
	if err != nil {
		return nil, err
	}
	k := &Keyring{be: be, dir: loc.Dir(), where: loc.describe(storage.Keys, ""), proven: map[string]bool{}, now: time.Now}
	for i, c := range creds {
		p, cfg, err := unlockConfig(ctx, be, loc, c)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			k.master, k.repoID = p.master, cfg.ID
		}
		k.proven[p.key] = true
		if len(c.Password) == 0 {
			path := c.KeyFile
			if path == "" {
				path = DefaultKeyFile(loc)
			}
			k.keyFiles = append(k.keyFiles, path)
		}
	}
	return k, nil
}

// Proven reports whether the caller's credentials open the wrapped key
// name.
func (k *Keyring) Proven(name string) bool { return k.proven[name] }

// Names lists the names in keys/, sorted.
func (k *Keyring) Names(ctx context.Context) ([]string, error) {
	var names []string
	err := k.be.List(ctx, storage.Keys, func(name string, _ int64) error {
		if !strings.HasPrefix(name, storage.TempPrefix) {
			names = append(names, name)
		}
		return nil
	})
	slices.Sort(names)
	return names, err
}

// List describes every wrapped key in keys/, by name. A file that cannot
// be read or decoded is listed as damaged, with the reason.
func (k *Keyring) List(ctx context.Context) ([]KeyInfo, error) {
	names, err := k.Names(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]KeyInfo, 0, len(names))
	for _, name := range names {
		w, err := loadWrapped(ctx, k.be, k.where, name)
		if err != nil {
			out = append(out, KeyInfo{Name: name, Kind: KindDamaged, Damaged: err.Error()})
			continue
		}
		info := KeyInfo{Name: name, Kind: KindKeyFile, Created: w.Created}
		if w.KDF == seal.KDFArgon2id {
			p := w.Params
			info.Kind, info.Argon2 = KindPassphrase, &p
		}
		out = append(out, info)
	}
	return out, nil
}

// Resolve finds the key that ref names: its whole name, or a prefix of
// at least 4 characters no other key shares.
func (k *Keyring) Resolve(ctx context.Context, ref string) (string, error) {
	names, err := k.Names(ctx)
	if err != nil {
		return "", err
	}
	if slices.Contains(names, ref) {
		return ref, nil
	}
	if len(ref) < 4 {
		return "", fmt.Errorf("key %q: give at least 4 characters of its name (cairn key list shows them)", ref)
	}
	var match []string
	for _, n := range names {
		if strings.HasPrefix(n, ref) {
			match = append(match, n)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("%s has no key %s: %w", k.where, ref, blob.ErrNotFound)
	case 1:
		return match[0], nil
	}
	return "", fmt.Errorf("key %s is ambiguous: %s", ref, strings.Join(match, ", "))
}

// AddPassphrase stores the master key wrapped with pass and returns the
// new key's name, once it has read it back and opened it with pass.
func (k *Keyring) AddPassphrase(ctx context.Context, pass []byte) (string, error) {
	unlock, err := k.lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	return k.putPassphrase(ctx, pass)
}

// ChangePassphrase replaces the passphrase key old (one the caller
// proved) by a key wrapped with pass: the new key is stored and opened
// first, then old is deleted. It returns the new key's name.
func (k *Keyring) ChangePassphrase(ctx context.Context, old string, pass []byte) (string, error) {
	if !k.proven[old] {
		return "", fmt.Errorf("key %s was not opened by the caller's passphrase", old)
	}
	unlock, err := k.lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	name, err := k.putPassphrase(ctx, pass)
	if err != nil {
		return "", err
	}
	return name, k.delete(ctx, old)
}

// AddKeyFile makes a new key file at path (which must not exist, and
// must lie outside the repository) and stores its wrapped key. It
// returns the new key's name.
func (k *Keyring) AddKeyFile(ctx context.Context, path string) (string, error) {
	if k.dir != "" && inside(k.dir, path) { // an object store has no local directory to keep it out of
		return "", fmt.Errorf("key file %s is inside the repository; keep it outside, or a copy of the repository carries its own key", path)
	}
	unlock, err := k.lock(ctx, path)
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Lstat(path); err == nil {
		return "", &KeyFileExistsError{Path: path}
	}
	// Link, not rename: a file that appeared at path meanwhile is never
	// replaced.
	kf, err := k.newKeyFile(ctx, path, nil, durable.Link)
	if err != nil {
		return "", err
	}
	return kf.Key, nil
}

// RotateKeyFile gives the key file at path (one the caller proved, which
// opens the wrapped key old) a new secret: a new key file is written
// beside it, its wrapped key stored and opened with it, the file renamed
// over path (keeping the old file's owner, group and mode), and only
// then old is deleted. Copies of the old key file stop opening the
// repository. It returns the new key's name.
func (k *Keyring) RotateKeyFile(ctx context.Context, path, old string) (string, error) {
	if !k.proven[old] {
		return "", fmt.Errorf("key %s was not opened by the caller's key file", old)
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real // replace the file, not a link to it
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("key file: %w", err)
	}
	unlock, err := k.lock(ctx, path)
	if err != nil {
		return "", err
	}
	defer unlock()
	kf, err := k.newKeyFile(ctx, path, fi, durable.Rename)
	if err != nil {
		return "", err
	}
	return kf.Key, k.delete(ctx, old)
}

// KeyInUseError is Remove's refusal to delete a key when no key the
// caller proved would stay.
type KeyInUseError struct {
	Name string // the key
	Only bool   // it is the repository's only key
}

func (e *KeyInUseError) Error() string {
	if e.Only {
		return "keys/" + e.Name + " is the only key of this repository"
	}
	return "keys/" + e.Name + " is the only key the caller's credentials open: prove another key that stays to remove it"
}

// Remove deletes the wrapped key name, which a lost passphrase or key
// file opened. It refuses (a [*KeyInUseError]) to delete the only key,
// and any key whose removal would leave no key the caller proved.
func (k *Keyring) Remove(ctx context.Context, name string) error {
	unlock, err := k.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	names, err := k.Names(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(names, name) {
		return fmt.Errorf("%s has no key %s: %w", k.where, name, blob.ErrNotFound)
	}
	if len(names) == 1 {
		return &KeyInUseError{Name: name, Only: true}
	}
	if !slices.ContainsFunc(names, func(n string) bool { return n != name && k.proven[n] }) {
		return &KeyInUseError{Name: name}
	}
	return k.delete(ctx, name)
}

// delete removes keys/name, which is never the last key the caller
// proved.
func (k *Keyring) delete(ctx context.Context, name string) error {
	if err := k.be.Delete(ctx, storage.Handle{Kind: storage.Keys, Name: name}); err != nil {
		return err
	}
	delete(k.proven, name)
	crashpoint.Hit("key-removed")
	return nil
}

// putPassphrase wraps the master key with pass, stores it, and opens it
// again from keys/ with pass.
func (k *Keyring) putPassphrase(ctx context.Context, pass []byte) (string, error) {
	p := k.KDF
	if p == (seal.KDFParams{}) {
		p = seal.DefaultKDF
	}
	w, err := seal.Wrap(k.master, pass, p, k.now())
	if err != nil {
		return "", err
	}
	name, err := k.put(ctx, w)
	if err != nil {
		return "", err
	}
	if err := k.opens(ctx, name, pass); err != nil {
		return "", err
	}
	k.proven[name] = true
	return name, nil
}

// put stores w in keys/ under the hash of its encoding.
func (k *Keyring) put(ctx context.Context, w *seal.Wrapped) (string, error) {
	enc, err := w.Encode()
	if err != nil {
		return "", err
	}
	name := keyName(enc)
	if err := k.be.Put(ctx, storage.Handle{Kind: storage.Keys, Name: name}, bytesReader(enc)); err != nil {
		return "", err
	}
	crashpoint.Hit("key-added")
	return name, nil
}

// opens checks that the stored key name unwraps to the master key with
// cred.
func (k *Keyring) opens(ctx context.Context, name string, cred []byte) error {
	w, err := loadWrapped(ctx, k.be, k.where, name)
	if err != nil {
		return err
	}
	m, err := w.Unwrap(cred)
	if err != nil || m != k.master {
		return fmt.Errorf("key %s: the key just stored does not open the repository (%v); nothing else was changed", filepath.Join(k.where, name), err)
	}
	return nil
}

// newKeyFile makes a new secret, writes the key file for it to a synced
// temporary file beside path (with the owner, group and mode of like,
// when given), stores its wrapped key, opens it with the file's secret,
// and gives the temporary file the name path with name (durable.Link or
// durable.Rename). When a step fails, what the earlier ones made is
// removed.
func (k *Keyring) newKeyFile(ctx context.Context, path string, like fs.FileInfo, name func(tmp, final string) error) (*KeyFile, error) {
	secret, err := seal.NewMasterKey()
	if err != nil {
		return nil, err
	}
	w, err := seal.WrapWithSecret(k.master, secret[:], k.now())
	if err != nil {
		return nil, err
	}
	enc, err := w.Encode()
	if err != nil {
		return nil, err
	}
	kf := &KeyFile{Version: 1, Repository: k.repoID, Key: keyName(enc), Secret: secret[:]}
	tmp, err := writeKeyTemp(path, kf, like)
	if err != nil {
		return nil, err
	}
	crashpoint.Hit("key-file-temp")
	if _, err := k.put(ctx, w); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := k.opens(ctx, kf.Key, kf.Secret); err != nil {
		return nil, k.undoKeyFile(ctx, kf, tmp, err)
	}
	k.proven[kf.Key] = true
	if err := name(tmp, path); err != nil {
		if durable.IsLinkError(err) {
			return nil, k.undoKeyFile(ctx, kf, tmp, fmt.Errorf("key file %s: %w", path, err))
		}
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	crashpoint.Hit("key-file-written")
	return kf, nil
}

// undoKeyFile removes a new key file's wrapped key and its temporary
// file after a later step failed, and returns err.
func (k *Keyring) undoKeyFile(ctx context.Context, kf *KeyFile, tmp string, err error) error {
	if derr := k.be.Delete(ctx, storage.Handle{Kind: storage.Keys, Name: kf.Key}); derr == nil {
		delete(k.proven, kf.Key)
		os.Remove(tmp)
	}
	return err
}

// writeKeyTemp writes kf to a new synced temporary file beside path
// (path.tmp-<16 hex digits>); with like, the file gets its owner, group
// and permission bits.
func writeKeyTemp(path string, kf *KeyFile, like fs.FileInfo) (string, error) {
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return "", err
	}
	tmp, err := durable.WriteTemp(filepath.Dir(path), filepath.Base(path)+".tmp-", func(f *os.File) error {
		if like != nil {
			if st, ok := like.Sys().(*syscall.Stat_t); ok {
				if uid, gid := int(st.Uid), int(st.Gid); uid != os.Getuid() || gid != os.Getgid() {
					if err := f.Chown(uid, gid); err != nil {
						return err
					}
				}
			}
			if err := f.Chmod(like.Mode().Perm()); err != nil {
				return err
			}
		}
		_, err := f.Write(append(b, '\n'))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("key file %s: %w", path, err)
	}
	return tmp, nil
}

// keyTempName matches the temporary files of key files (writeKeyTemp).
var keyTempName = regexp.MustCompile(`^\.tmp-[0-9a-f]{16}$`)

// lock takes the keys lock for a change and removes what interrupted
// changes left: temporary files in keys/, and temporary files of the
// caller's key files and of paths (each a key file this change writes).
// A temporary key file whose wrapped key was stored (a change killed
// before the file reached its name) holds the only copy of that key's
// secret: the wrapped key is deleted first, then the file, unless a key
// file at its final name holds the same key (a change killed between
// linking the file and removing the temporary name).
func (k *Keyring) lock(ctx context.Context, paths ...string) (func(), error) {
	unlock := func() {}
	if l, ok := k.be.(*storage.Local); ok {
		dir := filepath.Dir(l.Path(storage.Handle{Kind: storage.Keys, Name: "x"}))
		d, err := os.Open(dir)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			d.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("another key change is running on %s; try again when it is done", dir)
			}
			return nil, fmt.Errorf("keys: lock %s: %w", dir, err)
		}
		unlock = func() { d.Close() }
		entries, err := d.ReadDir(-1)
		if err != nil {
			unlock()
			return nil, fmt.Errorf("keys: %w", err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), storage.TempPrefix) {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					unlock()
					return nil, fmt.Errorf("keys: remove a leftover: %w", err)
				}
			}
		}
	}
	for _, p := range append(slices.Clone(k.keyFiles), paths...) {
		if err := k.cleanKeyFileTemps(ctx, p); err != nil {
			unlock()
			return nil, err
		}
	}
	return unlock, nil
}

// cleanKeyFileTemps removes the temporary files of the key file path
// that interrupted changes left, with the wrapped keys only they hold.
func (k *Keyring) cleanKeyFileTemps(ctx context.Context, path string) error {
	dir, base := filepath.Split(path)
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil // no directory, no leftovers: the change itself says what is wrong
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), base)
		if !ok || !keyTempName.MatchString(rest) {
			continue
		}
		tmp := filepath.Join(dir, e.Name())
		if name := k.orphanOf(ctx, path, tmp); name != "" {
			if err := k.be.Delete(ctx, storage.Handle{Kind: storage.Keys, Name: name}); err != nil {
				return fmt.Errorf("keys: remove key %s, left by an interrupted key change with %s: %w", name, tmp, err)
			}
		}
		if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("key file: remove a leftover: %w", err)
		}
	}
	return nil
}

// orphanOf returns the wrapped key that only the temporary key file tmp
// (of the key file path) opens, or "".
func (k *Keyring) orphanOf(ctx context.Context, path, tmp string) string {
	b, err := os.ReadFile(tmp)
	if err != nil {
		return ""
	}
	kf, err := decodeKeyFile(b, tmp)
	if err != nil || kf.Repository != k.repoID || k.proven[kf.Key] {
		return ""
	}
	if b, err := os.ReadFile(path); err == nil {
		if cur, err := decodeKeyFile(b, path); err == nil && cur.Key == kf.Key {
			return "" // the file reached its name: the key is in use
		}
	}
	w, err := loadWrapped(ctx, k.be, k.where, kf.Key)
	if err != nil || w.KDF != seal.KDFKeyFile {
		return ""
	}
	if m, err := w.Unwrap(kf.Secret); err != nil || m != k.master {
		return ""
	}
	return kf.Key
}
