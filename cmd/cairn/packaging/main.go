// Command packaging builds cairn's Debian package with nfpm (its Go API,
// github.com/goreleaser/nfpm/v2): `make package` builds the binary with
// the version stamped, then runs
//
//	go run . --bin BIN --version VERSION --commits N --out DIR
//
// in this directory. It stages what is generated from the binary (man
// pages from `cairn man`, gzipped; completion scripts from `cairn
// completion bash|zsh|fish`), then packages the files nfpm.yaml lists:
// the binary, the systemd units and example configuration of ../dist,
// and the maintainer scripts here. It prints the package's path.
//
// This is a module of its own, so that nfpm's dependencies never enter
// cairn's go.mod: the binary does not link them.
package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb"
)

func main() {
	bin := flag.String("bin", "", "the cairn binary to package (built with the version stamped)")
	version := flag.String("version", "", "the version (git describe --tags --always --dirty)")
	commits := flag.Int("commits", 0, "commits in the history (git rev-list --count HEAD), to order untagged builds")
	epoch := flag.Int64("date", 0, "the build's time (Unix seconds; the commit's): dates the man pages")
	out := flag.String("out", ".", "directory to write the .deb to")
	arch := flag.String("arch", runtime.GOARCH, "Debian architecture")
	flag.Parse()
	if *bin == "" || *version == "" {
		fmt.Fprintln(os.Stderr, "usage: go run . --bin BIN --version VERSION [--commits N] [--date UNIX] [--out DIR]")
		os.Exit(2)
	}
	path, err := build(*bin, *version, *commits, *epoch, *out, *arch)
	if err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

func build(bin, version string, commits int, epoch int64, out, arch string) (string, error) {
	here, err := os.Getwd()
	if err != nil {
		return "", err
	}
	bin, err = filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	debVersion, err := debianVersion(version, commits)
	if err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp("", "cairn-package-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	if err := stageFiles(bin, stage, filepath.Join(here, "..", "..", ".."), epoch); err != nil {
		return "", err
	}
	vars := map[string]string{
		"ARCH": arch, "DEB_VERSION": debVersion, "STAGE": stage,
	}
	cfg, err := nfpm.ParseFileWithEnvMapping(filepath.Join(here, "nfpm.yaml"), func(k string) string { return vars[k] })
	if err != nil {
		return "", err
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	if epoch != 0 {
		info.MTime = time.Unix(epoch, 0).UTC()
	}
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	target, err := filepath.Abs(filepath.Join(out, pkg.ConventionalFileName(info)))
	if err != nil {
		return "", err
	}
	info.Target = target
	f, err := os.Create(target)
	if err != nil {
		return "", err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(target)
		return "", err
	}
	return target, f.Close()
}

// stageFiles puts into stage what nfpm.yaml takes from there: the
// binary, its man pages (gzipped, as Debian wants them), its completion
// scripts, the README and the documents in docs/ it links.
func stageFiles(bin, stage, repoRoot string, epoch int64) error {
	if err := copyFile(bin, filepath.Join(stage, "cairn"), 0o755); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(repoRoot, "README.md"), filepath.Join(stage, "README.md"), 0o644); err != nil {
		return err
	}
	// The README links the reference in docs/; the same relative paths
	// hold under /usr/share/doc/cairn (the runbook points there too).
	if err := os.MkdirAll(filepath.Join(stage, "docs"), 0o755); err != nil {
		return err
	}
	for _, doc := range []string{"operating.md", "guarantees.md", "benchmarks.md", "ARCHITECTURE.md"} {
		if err := copyFile(filepath.Join(repoRoot, "docs", doc), filepath.Join(stage, "docs", doc), 0o644); err != nil {
			return err
		}
	}
	man := filepath.Join(stage, "man")
	cmd := exec.Command(bin, "man", man)
	cmd.Env = os.Environ()
	if epoch != 0 {
		cmd.Env = append(cmd.Env, "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10))
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cairn man: %v: %s", err, out)
	}
	pages, err := filepath.Glob(filepath.Join(man, "*.1"))
	if err != nil || len(pages) == 0 {
		return fmt.Errorf("cairn man wrote no pages (%v)", err)
	}
	for _, p := range pages {
		if err := gzipFile(p, epoch); err != nil {
			return err
		}
	}
	comp := filepath.Join(stage, "completion")
	if err := os.Mkdir(comp, 0o755); err != nil {
		return err
	}
	for shell, name := range map[string]string{"bash": "cairn.bash", "zsh": "_cairn", "fish": "cairn.fish"} {
		script, err := exec.Command(bin, "completion", shell).Output()
		if err != nil {
			return fmt.Errorf("cairn completion %s: %w", shell, err)
		}
		if err := os.WriteFile(filepath.Join(comp, name), script, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// gzipFile replaces p by p.gz, with no name and a fixed time in the
// header so that the same pages give the same bytes.
func gzipFile(p string, epoch int64) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.ModTime = time.Unix(epoch, 0)
	if _, err := zw.Write(b); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(p+".gz", buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Remove(p)
}

func copyFile(from, to string, mode os.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, mode)
}

var (
	tagged   = regexp.MustCompile(`^v?([0-9]+\.[0-9]+\.[0-9]+)(?:-([0-9]+)-g([0-9a-f]+))?(-dirty)?$`)
	untagged = regexp.MustCompile(`^([0-9a-f]{7,40})(-dirty)?$`)
)

// debianVersion turns `git describe --tags --always --dirty` into a
// Debian version that sorts the way the history does:
//
//	v1.2.3            1.2.3
//	v1.2.3-4-gabcdef0 1.2.3+4.gabcdef0
//	abcdef0 (no tag)  0.0.0~git.N.gabcdef0 (N: commits in the history)
//
// and "-dirty" adds ".dirty" (a build from a changed work tree).
func debianVersion(describe string, commits int) (string, error) {
	if m := tagged.FindStringSubmatch(describe); m != nil {
		v := m[1]
		if m[2] != "" {
			v += "+" + m[2] + ".g" + m[3]
		}
		if m[4] != "" {
			v += ".dirty"
			if m[2] == "" {
				v = m[1] + "+dirty"
			}
		}
		return v, nil
	}
	if m := untagged.FindStringSubmatch(describe); m != nil {
		v := fmt.Sprintf("0.0.0~git.%d.g%s", commits, m[1])
		if m[2] != "" {
			v += ".dirty"
		}
		return v, nil
	}
	return "", errors.New("version " + strconvQuote(describe) + ": want the output of git describe --tags --always --dirty")
}

func strconvQuote(s string) string { return strconv.Quote(strings.TrimSpace(s)) }
