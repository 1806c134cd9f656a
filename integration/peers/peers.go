package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// command is one program run: its arguments, working directory, extra
// environment, and the exit codes that mean "done, with warnings".
type command struct {
	args      []string
	dir       string
	env       []string
	warnCodes []int
}

// peer is one backup tool with its repository.
type peer interface {
	name() string
	version() string
	repo() string
	cache() string // a cache outside the repository, or ""
	wipe() error   // remove the repository and the cache
	initCmd() command
	backupCmd(label string) command
	// restoreCmd restores the latest snapshot into target, an empty
	// directory; restoredRoot is where the source tree lands in it.
	restoreCmd(target string) (command, error)
	restoredRoot(target string) string
	checkCmd() command
}

// baseEnv is the environment of every tool: ours without any variable
// that could point a tool at another repository, passphrase or socket.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RESTIC_") || strings.HasPrefix(kv, "BORG_") || strings.HasPrefix(kv, "KOPIA_") || strings.HasPrefix(kv, "CAIRN_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// output runs a short untimed command and returns its trimmed stdout.
func output(env []string, dir string, args ...string) (string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// restic: repository format 2 with compression auto, its cache under
// the work directory. Two of them: Debian's restic 0.14 ("restic") and
// restic 0.19.1 ("restic19"), which also restores sparse files as
// sparse (--sparse; 0.14 has no such flag).
type resticPeer struct {
	tool, bin          string
	dir, cacheDir, src string
	sparse             bool
	env                []string
}

func newRestic(repos, cacheDir, src string) *resticPeer {
	return &resticPeer{
		tool: "restic", bin: "restic",
		dir: filepath.Join(repos, "restic"), cacheDir: cacheDir, src: src,
		env: []string{"RESTIC_PASSWORD=peers benchmark passphrase", "RESTIC_CACHE_DIR=" + cacheDir},
	}
}

func newRestic19(bin, repos, cacheDir, src string) *resticPeer {
	r := newRestic(repos, cacheDir, src)
	r.tool, r.bin, r.dir, r.sparse = "restic19", bin, filepath.Join(repos, "restic19"), true
	return r
}

func (r *resticPeer) name() string  { return r.tool }
func (r *resticPeer) repo() string  { return r.dir }
func (r *resticPeer) cache() string { return r.cacheDir }
func (r *resticPeer) wipe() error   { return removeAll(r.dir, r.cacheDir) }

func (r *resticPeer) version() string {
	v, err := output(r.env, "", r.bin, "version")
	if err != nil {
		return "restic (version unknown: " + err.Error() + ")"
	}
	return firstLine(v)
}

func (r *resticPeer) cmd(args ...string) command {
	return command{args: append([]string{r.bin, "-r", r.dir}, args...), env: r.env}
}

func (r *resticPeer) initCmd() command { return r.cmd("init", "--repository-version", "2") }

func (r *resticPeer) backupCmd(label string) command {
	c := r.cmd("--compression", "auto", "backup", "--tag", label, r.src)
	c.warnCodes = []int{3} // snapshot saved, some files unreadable
	return c
}

func (r *resticPeer) restoreCmd(target string) (command, error) {
	if r.sparse {
		return r.cmd("restore", "latest", "--sparse", "--target", target), nil
	}
	return r.cmd("restore", "latest", "--target", target), nil
}

func (r *resticPeer) restoredRoot(target string) string { return filepath.Join(target, r.src) }

func (r *resticPeer) checkCmd() command { return r.cmd("check", "--read-data") }

// borg: repokey-blake2 encryption, zstd level 3; its cache, config and
// security directories under the work directory (BORG_BASE_DIR).
type borgPeer struct {
	dir, base, src string
	env            []string
}

func newBorg(repos, base, src string) *borgPeer {
	return &borgPeer{
		dir: filepath.Join(repos, "borg"), base: base, src: src,
		env: []string{
			"BORG_PASSPHRASE=peers benchmark passphrase",
			"BORG_BASE_DIR=" + base,
			"BORG_DISPLAY_PASSPHRASE=no",
			"BORG_RELOCATED_REPO_ACCESS_IS_OK=yes",
			"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes",
		},
	}
}

func (b *borgPeer) name() string  { return "borg" }
func (b *borgPeer) repo() string  { return b.dir }
func (b *borgPeer) cache() string { return b.base }
func (b *borgPeer) wipe() error   { return removeAll(b.dir, b.base) }

func (b *borgPeer) version() string {
	v, err := output(b.env, "", "borg", "--version")
	if err != nil {
		return "borg (version unknown: " + err.Error() + ")"
	}
	return firstLine(v)
}

func (b *borgPeer) initCmd() command {
	return command{args: []string{"borg", "init", "-e", "repokey-blake2", b.dir}, env: b.env}
}

func (b *borgPeer) backupCmd(label string) command {
	// Archive names must be unique in the repository, also across runs
	// that reuse it (--phases without init).
	archive := fmt.Sprintf("%s::%s-%s", b.dir, label, time.Now().UTC().Format("20060102T150405.000"))
	return command{
		args:      []string{"borg", "create", "--compression", "zstd,3", archive, b.src},
		env:       b.env,
		warnCodes: []int{1}, // borg: archive saved, with warnings
	}
}

// restoreCmd extracts the newest archive into target (borg extracts into
// its working directory); --sparse writes all-zero chunks as holes.
func (b *borgPeer) restoreCmd(target string) (command, error) {
	last, err := output(b.env, "", "borg", "list", "--last", "1", "--short", b.dir)
	if err != nil {
		return command{}, err
	}
	if last == "" {
		return command{}, errors.New("borg: the repository has no archive")
	}
	return command{
		args:      []string{"borg", "extract", "--sparse", b.dir + "::" + last},
		dir:       target,
		env:       b.env,
		warnCodes: []int{1},
	}, nil
}

func (b *borgPeer) restoredRoot(target string) string { return filepath.Join(target, b.src) }

func (b *borgPeer) checkCmd() command {
	return command{args: []string{"borg", "check", "--verify-data", b.dir}, env: b.env}
}

// kopia: a filesystem repository, a global policy of zstd compression
// (restic's --compression auto is zstd at its default level too), its
// config, cache and logs under the work directory (KOPIA_CONFIG_PATH,
// KOPIA_CACHE_DIRECTORY, KOPIA_LOG_DIR), the password from
// KOPIA_PASSWORD. Otherwise kopia's defaults, automatic maintenance
// included.
type kopiaPeer struct {
	bin, dir, base, src string
	env                 []string
}

func newKopia(bin, repos, base, src string) *kopiaPeer {
	return &kopiaPeer{
		bin: bin, dir: filepath.Join(repos, "kopia"), base: base, src: src,
		env: []string{
			"KOPIA_PASSWORD=peers benchmark passphrase",
			"KOPIA_CONFIG_PATH=" + filepath.Join(base, "repository.config"),
			"KOPIA_CACHE_DIRECTORY=" + filepath.Join(base, "cache"),
			"KOPIA_LOG_DIR=" + filepath.Join(base, "logs"),
			"KOPIA_CHECK_FOR_UPDATES=false",
		},
	}
}

func (k *kopiaPeer) name() string  { return "kopia" }
func (k *kopiaPeer) repo() string  { return k.dir }
func (k *kopiaPeer) cache() string { return k.base }
func (k *kopiaPeer) wipe() error   { return removeAll(k.dir, k.base) }

func (k *kopiaPeer) version() string {
	v, err := output(k.env, "", k.bin, "--version")
	if err != nil {
		return "kopia (version unknown: " + err.Error() + ")"
	}
	if f := strings.Fields(v); len(f) > 0 {
		v = f[0] // "v0.23.1 build: … from: …"
	}
	return "kopia " + v
}

func (k *kopiaPeer) cmd(args ...string) command {
	return command{args: append([]string{k.bin}, args...), env: k.env}
}

// initCmd creates the repository and sets the global compression
// policy, one timed command (kopia runs its first maintenance then).
func (k *kopiaPeer) initCmd() command {
	return command{
		args: []string{"sh", "-c", `"$0" repository create filesystem --path "$1" && "$0" policy set --global --compression zstd`, k.bin, k.dir},
		env:  k.env,
	}
}

func (k *kopiaPeer) backupCmd(label string) command {
	return k.cmd("snapshot", "create", k.src, "--tags", "label:"+label)
}

// restoreCmd restores the latest snapshot of the source path; kopia
// writes the directory's contents into target.
func (k *kopiaPeer) restoreCmd(target string) (command, error) {
	return k.cmd("snapshot", "restore", k.src, target, "--write-sparse-files"), nil
}

func (k *kopiaPeer) restoredRoot(target string) string { return target }

// checkCmd reads and verifies every content of every pack (--full:
// --download-percent 100), as restic check --read-data does.
func (k *kopiaPeer) checkCmd() command { return k.cmd("content", "verify", "--full") }

// label names a tool and its version for the table, from the first
// line its version command prints: "restic 0.19.1", "kopia 0.23.1",
// "borg 1.2.4"; cairn, or a tool whose version is unknown, by its name.
func label(tool, version string) string {
	f := strings.Fields(version)
	if tool == "cairn" || len(f) < 2 || strings.Contains(version, "version unknown") {
		return tool
	}
	return f[0] + " " + strings.TrimPrefix(f[1], "v")
}

// cairn: the binary built from this module, a passphrase file, default
// repository settings.
type cairnPeer struct {
	bin, dir, password, src string
}

func newCairn(bin, repos, password, src string) *cairnPeer {
	return &cairnPeer{bin: bin, dir: filepath.Join(repos, "cairn"), password: password, src: src}
}

func (c *cairnPeer) name() string  { return "cairn" }
func (c *cairnPeer) repo() string  { return c.dir }
func (c *cairnPeer) cache() string { return "" }

// wipe removes the repository and the files cairn keeps beside it.
func (c *cairnPeer) wipe() error {
	return removeAll(c.dir, c.dir+".key", c.dir+".host_key", c.dir+".yaml", c.dir+".sock")
}

func (c *cairnPeer) env() []string { return []string{"CAIRN_PASSWORD_FILE=" + c.password} }

func (c *cairnPeer) version() string {
	v, err := output(nil, "", c.bin, "version")
	if err != nil {
		return "cairn (version unknown: " + err.Error() + ")"
	}
	return firstLine(v)
}

// cmd runs cairn against the benchmark repository.
func (c *cairnPeer) cmd(args ...string) command {
	return c.cmdRepo(c.dir, args...)
}

// cmdRepo runs cairn against repository dir.
func (c *cairnPeer) cmdRepo(dir string, args ...string) command {
	return command{args: append([]string{c.bin, "--repo", dir}, args...), env: c.env()}
}

func (c *cairnPeer) initCmd() command { return c.cmd("init") }

func (c *cairnPeer) backupCmd(label string) command {
	cmd := c.cmd("backup", "--node", "peers", "--tag", label, c.src)
	cmd.warnCodes = []int{3} // snapshot saved, some files unreadable
	return cmd
}

func (c *cairnPeer) restoreCmd(target string) (command, error) {
	return c.cmd("restore", "latest:"+c.src, "--target", target), nil
}

// restoredRoot: cairn restores SNAPSHOT:PATH as target/<base of PATH>.
func (c *cairnPeer) restoredRoot(target string) string {
	return filepath.Join(target, filepath.Base(c.src))
}

func (c *cairnPeer) checkCmd() command { return c.cmd("check", "--read-data") }

func removeAll(paths ...string) error {
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

// buildCairn builds ./cmd/cairn of the module this program is run in.
func buildCairn(bin string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	fmt.Println("building cairn:", bin)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cairn")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building cairn: %w", err)
	}
	return nil
}

// moduleRoot finds the directory of the cairn module's go.mod from the
// working directory upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/cairnbackup/cairn\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run this from inside the cairn module (no go.mod of github.com/cairnbackup/cairn above the working directory)")
		}
		dir = parent
	}
}

// ensurePackages installs the Debian packages the selected tools need
// when they are missing (as root), or names them and fails.
func ensurePackages(o options) error {
	type need struct{ pkg, program string }
	needs := []need{{"time", "/usr/bin/time"}}
	for _, t := range o.tools {
		switch t {
		case "restic":
			needs = append(needs, need{"restic", "restic"})
		case "borg":
			needs = append(needs, need{"borgbackup", "borg"})
		}
	}
	var missing []string
	for _, n := range needs {
		if _, err := exec.LookPath(n.program); err != nil {
			missing = append(missing, n.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages: %s (as root: apt-get install -y %s)",
			strings.Join(missing, " "), strings.Join(missing, " "))
	}
	fmt.Println("installing Debian packages:", strings.Join(missing, " "))
	for _, args := range [][]string{{"apt-get", "update", "-qq"}, append([]string{"apt-get", "install", "-y", "-qq"}, missing...)} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(args, " "), err)
		}
	}
	return nil
}
