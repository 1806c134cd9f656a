package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/cairnbackup/cairn/repo/snapfs"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/cairnbackup/cairn/repo/status"
	"github.com/cairnbackup/cairn/repo/storage"
	"github.com/cairnbackup/cairn/repo/tree"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// globalOptions are the flags every command takes.
type globalOptions struct {
	repoDir      string // the repository's location: a directory or an s3:// URL
	stateDir     string // object store: the state directory
	cacheDir     string // object store: the cache directory
	s3Creds      string // object store: the S3 credentials file
	configFlag   string // the command's --config, if it has one
	passwordFile string
	keyFile      string
	json         bool
	logLevel     string
	logFormat    logFormat

	socket string

	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
	outMu  sync.Mutex

	// Set when the command runs inside the appliance for an operator
	// connected to its socket: the appliance's open repository, the
	// operator's working directory and whether they see a terminal.
	shared    *repo.Repository
	sharedDir string               // its location (absolute directory or URL)
	appliance *appliance.Appliance // the running appliance, inside it
	cwd       string
	stderrTTY bool
	loc       *time.Location // inside the appliance: the operator's time zone (nil: this process's)
	args      []string       // the command line, for forwarding to the appliance

	// proven are the credentials proveKeys proved, which open uses.
	proven *repo.Credentials

	logSignal func() // logs (once) the signal that stopped the command

	cpuProfile  string // write a CPU profile (pprof) of this command
	memProfile  string // write a heap profile at the end
	profileStop func()
}

// startProfile starts the profiles asked for with --cpuprofile and
// --memprofile (for finding what bounds a phase before optimising it).
func (g *globalOptions) startProfile() error {
	if g.cpuProfile == "" && g.memProfile == "" {
		return nil
	}
	var cpu *os.File
	if g.cpuProfile != "" {
		f, err := os.Create(g.abs(g.cpuProfile))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		cpu = f
	}
	g.profileStop = func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if g.memProfile != "" {
			if f, err := os.Create(g.abs(g.memProfile)); err == nil {
				pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
	}
	return nil
}

func (g *globalOptions) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVarP(&g.repoDir, "repo", "r", os.Getenv("CAIRN_REPO"), "repository: a directory, s3://HOST[:PORT]/BUCKET[/PREFIX] or s3+http://HOST:PORT/BUCKET[/PREFIX] (env CAIRN_REPO)")
	f.StringVar(&g.stateDir, "state-dir", os.Getenv("CAIRN_STATE_DIR"), "object store: directory of the files beside the repository (key file, configuration, host key, socket, runbook) (env CAIRN_STATE_DIR; default /var/lib/cairn/s3/ENDPOINT/BUCKET[/PREFIX])")
	f.StringVar(&g.cacheDir, "cache-dir", os.Getenv("CAIRN_CACHE_DIR"), "object store: directory of the index and the local lock, rebuilt from the bucket when lost (env CAIRN_CACHE_DIR; default /var/cache/cairn/REPOSITORY-ID)")
	f.StringVar(&g.s3Creds, "s3-credentials", os.Getenv("CAIRN_S3_CREDENTIALS"), "object store: file of AWS_ACCESS_KEY_ID=…, AWS_SECRET_ACCESS_KEY=… (mode 0600; env CAIRN_S3_CREDENTIALS; default the environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, else s3_credentials: in the appliance configuration)")
	f.StringVar(&g.passwordFile, "password-file", os.Getenv("CAIRN_PASSWORD_FILE"), "file holding the passphrase (env CAIRN_PASSWORD_FILE)")
	f.StringVar(&g.keyFile, "key-file", os.Getenv("CAIRN_KEY_FILE"), "key file for unattended use (env CAIRN_KEY_FILE; default: the repository path + .key, or STATE/cairn.key for an object store)")
	f.BoolVar(&g.json, "json", false, "print machine-readable JSON")
	f.StringVar(&g.logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	f.Var(&g.logFormat, "log-format", "log format on stderr: text (key=value) or json (one object per line)")
	f.StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) of the command to FILE")
	f.StringVar(&g.memProfile, "memprofile", "", "write a heap profile (pprof) at the end of the command to FILE")
	f.MarkHidden("cpuprofile")
	f.MarkHidden("memprofile")
	f.StringVar(&g.socket, "socket", os.Getenv("CAIRN_SOCKET"), "the running appliance's operator socket (env CAIRN_SOCKET; default: the repository path + .sock, or STATE/cairn.sock for an object store)")
	if g.stdout == nil {
		g.stdout, g.stderr, g.stdin = os.Stdout, os.Stderr, os.Stdin
		g.stderrTTY = term.IsTerminal(int(os.Stderr.Fd()))
	}
}

// abs makes p absolute, relative to the operator's working directory.
func (g *globalOptions) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	cwd := g.cwd
	if cwd == "" {
		var err error
		if cwd, err = os.Getwd(); err != nil {
			return p
		}
	}
	return filepath.Join(cwd, p)
}

// socketPath is where a running appliance for --repo listens.
func (g *globalOptions) socketPath() string {
	if g.socket != "" {
		return g.socket
	}
	p, err := g.place()
	if err != nil {
		return ""
	}
	return appliance.SocketPath(p)
}

// place is the repository's location (--repo), with a relative directory
// made absolute and the state directory (--state-dir) of an object store.
func (g *globalOptions) place() (repo.Place, error) {
	if err := g.requireRepo(); err != nil {
		return repo.Place{}, err
	}
	state := g.stateDir
	if state != "" {
		state = g.abs(state)
	}
	p, err := repo.ParsePlace(g.repoDir, state)
	if err != nil {
		return repo.Place{}, usageError{fmt.Errorf("--repo: %w", err)}
	}
	if p.Dir() != "" {
		p = p.Abs(g.cwd)
	}
	return p, nil
}

// location is the repository's location as messages and the appliance
// name it: the absolute directory, or the URL; "" when there is none.
func (g *globalOptions) location() string {
	p, err := g.place()
	if err != nil {
		return g.abs(g.repoDir)
	}
	return p.String()
}

// repoOptions completes o with what an object-store repository needs:
// the state and cache directories and the S3 credentials.
func (g *globalOptions) repoOptions(o repo.Options) (repo.Options, error) {
	p, err := g.place()
	if err != nil {
		return o, err
	}
	if !p.ObjectStore() {
		if g.cacheDir != "" {
			return o, usageError{fmt.Errorf("--cache-dir (or CAIRN_CACHE_DIR) is only for an object-store repository; directory repository %s keeps its index inside it", p)}
		}
		return o, nil
	}
	o.StateDir = p.StateDir()
	if g.cacheDir != "" {
		o.CacheDir = g.abs(g.cacheDir)
	}
	a, err := g.s3Access(p, g.configFlag)
	if err != nil {
		return o, err
	}
	o.S3 = a
	return o, nil
}

// s3Access finds the S3 credentials of an object-store repository: the
// file --s3-credentials (CAIRN_S3_CREDENTIALS) names; else
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; else
// the file s3_credentials: names in the appliance's configuration
// (config, or the default beside the repository). Secrets stay in
// files and the environment, never in arguments.
func (g *globalOptions) s3Access(p repo.Place, config string) (repo.S3Access, error) {
	if g.s3Creds != "" {
		c, err := storage.LoadS3Credentials(g.abs(g.s3Creds))
		return repo.S3Access{Credentials: c}, err
	}
	c, found, err := storage.S3CredentialsFromEnv(os.Getenv)
	if err != nil || found {
		return repo.S3Access{Credentials: c}, err
	}
	path := g.configPath(config)
	cfg, err := appliance.LoadConfig(path)
	if err != nil {
		return repo.S3Access{}, fmt.Errorf("S3 credentials for %s: %w", p, err)
	}
	if cfg.S3Credentials == "" {
		return repo.S3Access{}, fmt.Errorf("no S3 credentials for %s: set %s and %s, name a credentials file with --s3-credentials or CAIRN_S3_CREDENTIALS, or with s3_credentials: in %s",
			p, storage.EnvAccessKeyID, storage.EnvSecretAccessKey, path)
	}
	c, err = storage.LoadS3Credentials(cfg.S3Credentials)
	return repo.S3Access{Credentials: c}, err
}

func (g *globalOptions) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	o := &slog.HandlerOptions{Level: lvl}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(g.stderr, o))
	}
	return slog.New(slog.NewTextHandler(g.stderr, o))
}

// logFormat is the value of --log-format: "text" (the default, also
// when empty) or "json"; anything else is refused when the flag is
// parsed, a usage error.
type logFormat string

func (f *logFormat) String() string {
	if *f == "" {
		return "text"
	}
	return string(*f)
}

func (f *logFormat) Set(s string) error {
	if s != "text" && s != "json" {
		return errors.New("give text or json")
	}
	*f = logFormat(s)
	return nil
}

func (f *logFormat) Type() string { return "FORMAT" }

func (g *globalOptions) requireRepo() error {
	if g.repoDir == "" {
		return usageError{errors.New("no repository: give --repo DIR or set CAIRN_REPO")}
	}
	return nil
}

// credentials reads the passphrase file if one is named; otherwise the
// key file is used.
func (g *globalOptions) credentials() (repo.Credentials, error) {
	c := repo.Credentials{KeyFile: g.keyFile}
	if g.passwordFile != "" {
		b, err := readPasswordFile(g.passwordFile)
		if err != nil {
			return c, err
		}
		c.Password = b
	}
	return c, nil
}

// readPasswordFile reads a passphrase from a file: its contents without
// one trailing newline (\n or \r\n); an empty passphrase is refused.
func readPasswordFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("password file %s is empty", path)
	}
	return b, nil
}

// credential is one key the caller offers: a password file or a key file.
type credential struct {
	what string // "password file PATH" or "key file PATH", for messages
	cred repo.Credentials
}

// credentialList returns the credentials the caller named (--password-file,
// --key-file, or CAIRN_PASSWORD_FILE, CAIRN_KEY_FILE), the password file
// first, as Open prefers it. With none named it returns the default key
// file DIR.key when dflt is set, else nothing.
func (g *globalOptions) credentialList(dflt bool) ([]credential, error) {
	var list []credential
	if g.passwordFile != "" {
		c, err := g.credentials()
		if err != nil {
			return nil, err
		}
		list = append(list, credential{"password file " + g.passwordFile, repo.Credentials{Password: c.Password}})
	}
	if g.keyFile != "" {
		list = append(list, credential{"key file " + g.keyFile, repo.Credentials{KeyFile: g.keyFile}})
	}
	if len(list) == 0 && dflt {
		p, err := g.place()
		if err != nil {
			return nil, err
		}
		list = append(list, credential{"key file " + repo.DefaultKeyFile(p), repo.Credentials{}})
	}
	return list, nil
}

// keyProof is a credential proven to open the repository, and the
// wrapped key in keys/ it opened.
type keyProof struct {
	what, key string
	cred      repo.Credentials // proven: opens the repository without unwrapping again
}

// proveKeys checks that every credential the caller named opens the
// repository (repo.ProveKey: keys/ and the config, read here, whether or
// not an appliance runs), or with dflt and none named the default key
// file. The first proven credential is the one g.open then uses, without
// unwrapping the key again.
func (g *globalOptions) proveKeys(ctx context.Context, dflt bool) ([]keyProof, error) {
	if err := g.requireRepo(); err != nil {
		return nil, err
	}
	list, err := g.credentialList(dflt)
	if err != nil {
		return nil, err
	}
	o, err := g.repoOptions(repo.Options{})
	if err != nil {
		return nil, err
	}
	var proofs []keyProof
	for _, c := range list {
		proven, key, err := repo.ProveKey(ctx, g.repoDir, c.cred, o)
		if err != nil {
			return nil, g.keyError(c.what, err)
		}
		if g.proven == nil {
			g.proven = &proven
		}
		proofs = append(proofs, keyProof{what: c.what, key: key, cred: proven})
	}
	return proofs, nil
}

// keyError says which credential did not open which repository, or
// could not be checked against it.
func (g *globalOptions) keyError(what string, err error) error {
	dir := g.location()
	var wk *repo.WrongKeyError
	switch {
	case errors.As(err, &wk):
		subject := "it"
		if wk.KeyFile == "" {
			subject = "the passphrase"
		}
		msg := fmt.Sprintf("the %s does not open repository %s: %s %s", what, dir, subject, wk.Reason)
		if wk.Err != nil {
			msg += "; unusable key files: " + wk.Err.Error()
		}
		return &keyErr{msg: msg, err: err}
	case errors.Is(err, fs.ErrPermission), storage.IsUnavailable(err):
		// Unreadable key files, a store that does not answer: say
		// what was being done (the command did not start).
		return fmt.Errorf("the %s could not be checked against repository %s: %w", what, dir, err)
	}
	return err
}

// keyErr is a credential that does not open the repository, said with
// the credential's name; it matches repo.ErrWrongKey.
type keyErr struct {
	msg string
	err error
}

func (e *keyErr) Error() string { return e.msg }
func (e *keyErr) Unwrap() error { return e.err }

// open opens the repository, or inside the appliance returns its shared
// handle; release closes what open opened.
func (g *globalOptions) open(ctx context.Context, o repo.Options) (*repo.Repository, func(), error) {
	if g.shared != nil {
		if o.SkipIndex {
			return nil, nil, errors.New("stop the appliance (cairn serve) first: this command needs the repository to itself")
		}
		return g.shared, func() {}, nil
	}
	if err := g.requireRepo(); err != nil {
		return nil, nil, err
	}
	cred, err := g.credentials()
	if err != nil {
		return nil, nil, err
	}
	if g.proven != nil {
		cred = *g.proven
	}
	o.Logger = g.logger()
	if o, err = g.repoOptions(o); err != nil {
		return nil, nil, err
	}
	r, err := repo.Open(ctx, g.repoDir, cred, o)
	if wk := (*repo.WrongKeyError)(nil); errors.As(err, &wk) {
		p, _ := g.place()
		what := "key file " + cmp.Or(g.keyFile, repo.DefaultKeyFile(p))
		if g.passwordFile != "" {
			what = "password file " + g.passwordFile
		}
		return nil, nil, g.keyError(what, err)
	}
	if err != nil {
		return nil, nil, err
	}
	return r, func() { r.Close() }, nil
}

func (g *globalOptions) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// output prints v as JSON with --json, and otherwise calls text, which
// prints the same for people.
func (g *globalOptions) output(v any, text func()) error {
	if g.json {
		return g.printJSON(v)
	}
	text()
	return nil
}

func (g *globalOptions) printf(format string, args ...any) {
	fmt.Fprintf(g.stdout, format, args...)
}

// splitRef splits "SNAPSHOT[:PATH]".
func splitRef(s string) (ref, sub string) {
	ref, sub, _ = strings.Cut(s, ":")
	return ref, sub
}

// findSnapshot resolves the argument SNAPSHOT[:PATH] among the snapshots
// passing f (snapshot.Find: "latest:PATH" is the newest that holds PATH)
// and returns the snapshot and PATH. What Find notes about its choice
// goes to standard error.
func (g *globalOptions) findSnapshot(ctx context.Context, r *repo.Repository, arg string, f snapshot.Filter) (snapshot.Entry, string, error) {
	ref, sub := splitRef(arg)
	e, note, err := r.FindSnapshot(ctx, ref, sub, f)
	g.note(note)
	return e, sub, err
}

// lookupRef resolves the argument SNAPSHOT[:PATH] (findSnapshot) and
// looks PATH up in the snapshot: the snapshot, PATH's entry, and PATH as
// in the snapshot, clean and with a leading "/".
func (g *globalOptions) lookupRef(ctx context.Context, r *repo.Repository, arg string, f snapshot.Filter) (snapshot.Entry, tree.Node, string, error) {
	sn, sub, err := g.findSnapshot(ctx, r, arg, f)
	if err != nil {
		return sn, tree.Node{}, "", err
	}
	n, err := snapfs.Lookup(ctx, r, sn.Tree, sub)
	if err != nil {
		return sn, tree.Node{}, "", fmt.Errorf("snapshot %s: %w", sn.ID.Short(), err)
	}
	return sn, n, path.Clean("/" + sub), nil
}

// note prints a note about a choice made for the user on standard error.
func (g *globalOptions) note(s string) {
	if s != "" {
		fmt.Fprintln(g.stderr, "note:", s)
	}
}

// configPath is the appliance configuration to read: config when given;
// else inside the appliance the file it reads, and otherwise DIR.yaml
// beside the repository; absolute.
func (g *globalOptions) configPath(config string) string {
	switch {
	case config != "":
		return g.abs(config)
	case g.appliance != nil && g.appliance.ConfigPath() != "":
		return g.appliance.ConfigPath()
	}
	p, err := g.place()
	if err != nil {
		return g.abs(g.repoDir) + ".yaml"
	}
	return appliance.ConfigPath(p)
}

// eachLine makes an error of several lines (errors.Join) print each with
// the "cairn: " prefix the first line gets.
func eachLine(err error) error {
	return errors.New(strings.ReplaceAll(err.Error(), "\n", "\ncairn: "))
}

// humanBytes formats a byte count with binary units.
func humanBytes(n uint64) string { return status.HumanBytes(n) }
