package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/internal/durable"
	"github.com/cairnbackup/cairn/repo/seal"
	"github.com/cairnbackup/cairn/repo/storage"
)

// Credentials open a repository: a passphrase, or a key file.
type Credentials struct {
	// Password is the passphrase (from --password-file or
	// CAIRN_PASSWORD_FILE). When set, KeyFile is ignored.
	Password []byte
	// KeyFile is the path of a key file made by Init; see [KeyFile].
	KeyFile string
	// KDF overrides the argon2id costs when Init wraps a new key with a
	// passphrase; zero means [seal.DefaultKDF].
	KDF seal.KDFParams

	proven *proof // set by ProveKey
}

// KeyFile is the JSON document Init writes outside the repository for
// unattended appliances: the secret that unwraps the repository's
// master key. Whoever has it can read every backup; keep it with the same
// care as a passphrase, and keep a copy off the box.
type KeyFile struct {
	Version    int     `json:"version"`
	Repository blob.ID `json:"repository"`
	Key        string  `json:"key"`    // the name of the wrapped key in keys/
	Secret     []byte  `json:"secret"` // 32 bytes
}

// ErrWrongKey is wrapped by Open's error when the passphrase or key file
// does not open the repository.
var ErrWrongKey = errors.New("wrong passphrase or key file")

// DefaultKeyFile is where Init writes, and Open looks for, the key file
// when none is named: next to a repository directory (DIR.key), never
// inside it, so a copy of the repository does not carry its own key; in
// the state directory of an object-store repository (STATE/cairn.key).
func DefaultKeyFile(loc Place) string {
	return loc.Beside(".key")
}

// decodeKeyFile parses a key file's contents; path is for messages.
func decodeKeyFile(b []byte, path string) (*KeyFile, error) {
	var kf KeyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if kf.Version != 1 || len(kf.Secret) != seal.KeySize || kf.Key == "" {
		return nil, fmt.Errorf("key file %s: not a cairn key file", path)
	}
	return &kf, nil
}

// writeKeyFile writes kf durably and refuses to replace an existing file.
func writeKeyFile(path string, kf *KeyFile) error {
	tmp, err := writeKeyTemp(path, kf, nil)
	if err != nil {
		return err
	}
	if err := durable.Link(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("key file: %w", err)
	}
	return nil
}

// NoKeyError is the error of [Open] and [ProveKey] given no passphrase
// and no key file where the key file would be. It names no flag: the
// caller says how a passphrase or key file is given.
type NoKeyError struct {
	KeyFile string // the key file looked for
}

func (e *NoKeyError) Error() string {
	return "no key: give a passphrase or a key file (" + e.KeyFile + " does not exist)"
}

// KeyFileExistsError is the refusal to write a new key file where a file
// exists.
type KeyFileExistsError struct {
	Path string
}

func (e *KeyFileExistsError) Error() string {
	return "key file " + e.Path + " exists already; move it away or name another"
}

// WrongKeyError is the error of [Open] and [ProveKey] when a credential
// does not open the repository. It matches [ErrWrongKey].
type WrongKeyError struct {
	// KeyFile is the key file tried; empty for a passphrase.
	KeyFile string
	// Reason says what the credential did, without its subject: "opens
	// none of the 2 passphrase keys in DIR/keys", "names key K, which this
	// repository does not have", "is not a cairn key file".
	Reason string
	// Err holds what was wrong with files of keys/ met on the way, if any.
	Err error
}

// Subject names the credential: "the passphrase" or "key file PATH".
func (e *WrongKeyError) Subject() string {
	if e.KeyFile == "" {
		return "the passphrase"
	}
	return "key file " + e.KeyFile
}

func (e *WrongKeyError) Error() string {
	msg := ErrWrongKey.Error() + ": " + e.Subject() + " " + e.Reason
	if e.Err != nil {
		msg += "; damaged: " + e.Err.Error()
	}
	return msg
}

// Unwrap gives ErrWrongKey and the damaged key files.
func (e *WrongKeyError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrWrongKey}
	}
	return []error{ErrWrongKey, e.Err}
}

// proof is what ProveKey found: the master key the credentials unwrapped
// for the repository at loc, and the name of the wrapped key in keys/.
type proof struct {
	loc    string
	master seal.MasterKey
	key    string
}

// ProveKey checks that cred opens the repository at location (see
// [ParsePlace]; o gives its state directory and S3 access): it unwraps the
// master key against keys/ and authenticates the sealed config with it,
// as [Open] does first. It reads only the config, keys/ and the key file,
// takes no lock and never opens the index, so it works while another
// process (the appliance) has the repository open. It returns the name
// of the wrapped key in keys/ that cred opened, and cred carrying the
// proof: an Open of the same dir with it does not unwrap the key again
// (argon2id costs a quarter of a second). A credential that does not
// open the repository gives a [*WrongKeyError].
func ProveKey(ctx context.Context, location string, cred Credentials, o Options) (proven Credentials, key string, err error) {
	loc, err := ParsePlace(location, o.StateDir)
	if err != nil {
		return cred, "", err
	}
	be, err := loc.backend(ctx, o.S3)
	if err != nil {
		return cred, "", err
	}
	p, _, err := unlockConfig(ctx, be, loc, cred)
	if err != nil {
		return cred, "", err
	}
	cred.proven = p
	return cred, p.key, nil
}

// unlockConfig reads the sealed config of the repository at loc, unwraps
// the master key with cred (or takes the one cred was proven with) and
// authenticates and decodes the config with it. It only reads.
func unlockConfig(ctx context.Context, be storage.Backend, loc Place, cred Credentials) (*proof, *Config, error) {
	sealedCfg, err := storage.ReadAll(ctx, be, storage.Handle{Kind: storage.Config}, 1<<20)
	if errors.Is(err, storage.ErrNotExist) {
		if loc.ObjectStore() {
			return nil, nil, fmt.Errorf("%s is not a cairn repository (no config object); create one with cairn init", loc)
		}
		return nil, nil, fmt.Errorf("%s is not a cairn repository (no config file); create one with cairn init", loc)
	}
	if err != nil {
		return nil, nil, err
	}
	p := cred.proven
	if p == nil || p.loc != loc.String() {
		m, name, err := unlock(ctx, be, loc, cred)
		if err != nil {
			return nil, nil, err
		}
		p = &proof{loc: loc.String(), master: m, key: name}
	}
	plain, err := p.master.DataKey().Open(nil, sealedCfg, []byte(configAAD))
	if err != nil {
		return nil, nil, fmt.Errorf("config does not authenticate with the repository key: %w", err)
	}
	cfg, err := decodeConfig(plain)
	if err != nil {
		return nil, nil, err
	}
	return p, cfg, nil
}

// unlock finds the wrapped key the credentials open and returns the
// master key and the wrapped key's name. It only reads. A key file in
// keys/ that is damaged is named as damaged, not taken for a wrong
// credential: keys are named by the SHA-256 of their contents (see
// [keyName]).
func unlock(ctx context.Context, be storage.Backend, loc Place, cred Credentials) (seal.MasterKey, string, error) {
	var zero seal.MasterKey
	keysDir := loc.describe(storage.Keys, "")
	if len(cred.Password) > 0 {
		var names []string
		err := be.List(ctx, storage.Keys, func(name string, _ int64) error {
			names = append(names, name)
			return nil
		})
		if err != nil {
			return zero, "", err
		}
		tried := 0
		var broken []error
		for _, name := range names {
			w, err := loadWrapped(ctx, be, keysDir, name)
			if err != nil {
				// A damaged or foreign file in keys/ must not lock
				// the repository: try the others.
				broken = append(broken, err)
				continue
			}
			if w.KDF != seal.KDFArgon2id {
				continue
			}
			tried++
			m, err := w.Unwrap(cred.Password)
			if err == nil {
				return m, name, nil
			}
			if !errors.Is(err, seal.ErrWrongKey) {
				broken = append(broken, fmt.Errorf("key %s: %w", keysDir+"/"+name, err))
			}
		}
		if tried == 0 && len(broken) > 0 {
			// No intact passphrase key: whether the passphrase is
			// right cannot be known, but the damage can.
			return zero, "", joinLines(broken)
		}
		e := &WrongKeyError{Reason: fmt.Sprintf("opens none of the %d passphrase keys in %s", tried, keysDir)}
		if len(broken) > 0 {
			e.Err = joinLines(broken)
		}
		if tried == 0 {
			e.Reason = "opens nothing: the repository has no passphrase keys (use its key file)"
		}
		return zero, "", e
	}
	path := cred.KeyFile
	if path == "" {
		path = DefaultKeyFile(loc)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return zero, "", &NoKeyError{KeyFile: path}
	}
	if err != nil {
		return zero, "", fmt.Errorf("key file: %w", err)
	}
	kf, err := decodeKeyFile(b, path)
	if err != nil {
		return zero, "", &WrongKeyError{KeyFile: path, Reason: "is not a cairn key file"}
	}
	w, err := loadWrapped(ctx, be, keysDir, kf.Key)
	if errors.Is(err, storage.ErrNotExist) {
		return zero, "", &WrongKeyError{KeyFile: path, Reason: fmt.Sprintf("names key %s, which this repository does not have", kf.Key)}
	}
	if err != nil {
		return zero, "", err
	}
	m, err := w.Unwrap(kf.Secret)
	if errors.Is(err, seal.ErrWrongKey) {
		return zero, "", &WrongKeyError{KeyFile: path, Reason: "does not open key " + kf.Key}
	}
	return m, kf.Key, err
}

// joinLines joins errors on one line, separated by "; ".
func joinLines(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return blob.Corrupt(errors.New(strings.Join(msgs, "; ")))
}

// loadWrapped reads and decodes keys/<name>. A key named by a SHA-256
// (every key made since keys were named so) must hash to its name: one
// that does not is damaged, which a wrong credential could not be told
// from once its sealed bytes changed. Errors name the file (in dir).
func loadWrapped(ctx context.Context, be storage.Backend, dir, name string) (*seal.Wrapped, error) {
	b, err := storage.ReadAll(ctx, be, storage.Handle{Kind: storage.Keys, Name: name}, seal.MaxWrappedSize)
	if err != nil {
		return nil, err
	}
	if id, err := blob.ParseID(name); err == nil && blob.Hash(b) != id {
		return nil, blob.Corrupt(fmt.Errorf("key %s is damaged: its contents do not hash to its name (put back a copy of the file)", dir+"/"+name))
	}
	w, err := seal.DecodeWrapped(b)
	if err != nil {
		return nil, fmt.Errorf("key %s is damaged (put back a copy of the file): %w", dir+"/"+name, blob.Corrupt(err))
	}
	return w, nil
}

// keyName is the name of a wrapped key in keys/: the SHA-256 of its
// encoding, so that damage to the file is found before the key is tried.
// (Repositories made before keys were named so have random 16-digit
// names; damage to those still looks like a wrong credential.)
func keyName(enc []byte) string { return blob.Hash(enc).String() }

// addKey wraps m with cred and stores it in keys/. In key file mode it
// also writes the key file, which must not exist yet.
func addKey(ctx context.Context, be storage.Backend, repoID blob.ID, loc Place, m seal.MasterKey, cred Credentials, now time.Time) (keyFile string, err error) {
	var w *seal.Wrapped
	var secret seal.MasterKey
	if len(cred.Password) > 0 {
		p := cred.KDF
		if p == (seal.KDFParams{}) {
			p = seal.DefaultKDF
		}
		w, err = seal.Wrap(m, cred.Password, p, now)
		if err != nil {
			return "", err
		}
	} else {
		keyFile = cred.KeyFile
		if keyFile == "" {
			keyFile = DefaultKeyFile(loc)
		}
		if _, err := os.Lstat(keyFile); err == nil {
			return "", &KeyFileExistsError{Path: keyFile}
		}
		if secret, err = seal.NewMasterKey(); err != nil {
			return "", err
		}
		if w, err = seal.WrapWithSecret(m, secret[:], now); err != nil {
			return "", err
		}
	}
	enc, err := w.Encode()
	if err != nil {
		return "", err
	}
	name := keyName(enc)
	if keyFile != "" {
		if err := writeKeyFile(keyFile, &KeyFile{Version: 1, Repository: repoID, Key: name, Secret: secret[:]}); err != nil {
			return "", err
		}
	}
	if err := be.Put(ctx, storage.Handle{Kind: storage.Keys, Name: name}, bytesReader(enc)); err != nil {
		return "", err
	}
	return keyFile, nil
}
