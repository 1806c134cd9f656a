package datagen

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/minio/sha256-simd"
	"golang.org/x/sys/unix"
)

// Entry describes one entry of a tree, as [Walk] saw it.
type Entry struct {
	Path    string            // relative to the root, slash-separated; "." for the root
	Type    string            // "file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev"
	Mode    fs.FileMode       // permission bits plus setuid, setgid and sticky; no type bits
	Size    int64             // files: size; symlinks: length of the target; others 0
	MTimeNs int64             // modification time in nanoseconds since 1970 (the link's own for symlinks)
	Target  string            // symlinks: the target as stored
	SHA256  string            // files: hex SHA-256 of the contents
	Nlink   uint64            // link count; 0 for directories, whose count depends on the filesystem
	Xattrs  map[string]string // extended attributes outside the security namespace; nil if none
	Inode   uint64            // inode number
}

// Walk describes the tree at dir, root included, sorted by Path. It does
// not follow symlinks and does not open anything but regular files.
// Reading a file changes its atime, which Walk does not record.
func Walk(dir string) ([]Entry, error) {
	w := walker{root: dir, hash: true, hashes: map[uint64]string{}, buf: make([]byte, bufSize)}
	if err := w.walk("."); err != nil {
		return nil, err
	}
	slices.SortFunc(w.out, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	return w.out, nil
}

type walker struct {
	root   string
	hash   bool              // compute SHA256 and Xattrs
	hashes map[uint64]string // by inode: each hardlinked file is read once
	buf    []byte
	out    []Entry
}

func (w *walker) walk(rel string) error {
	name := filepath.Join(w.root, filepath.FromSlash(rel))
	var st unix.Stat_t
	if err := unix.Lstat(name, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	e := Entry{
		Path:    rel,
		Mode:    fs.FileMode(st.Mode & 0o777),
		MTimeNs: st.Mtim.Nano(),
		Nlink:   uint64(st.Nlink),
		Inode:   st.Ino,
	}
	if st.Mode&unix.S_ISUID != 0 {
		e.Mode |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		e.Mode |= fs.ModeSetgid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		e.Mode |= fs.ModeSticky
	}
	var err error
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type, e.Size = "file", st.Size
		if w.hash {
			e.SHA256, err = w.sum(name, st.Ino)
		}
	case unix.S_IFDIR:
		e.Type, e.Nlink = "dir", 0
	case unix.S_IFLNK:
		e.Type = "symlink"
		e.Target, err = os.Readlink(name)
		e.Size = int64(len(e.Target))
	case unix.S_IFIFO:
		e.Type = "fifo"
	case unix.S_IFSOCK:
		e.Type = "socket"
	case unix.S_IFCHR:
		e.Type = "chardev"
	case unix.S_IFBLK:
		e.Type = "blockdev"
	default:
		e.Type = "unknown"
	}
	if err != nil {
		return err
	}
	if w.hash {
		if e.Xattrs, err = xattrs(name); err != nil {
			return err
		}
	}
	w.out = append(w.out, e)
	if e.Type != "dir" {
		return nil
	}
	entries, err := os.ReadDir(name)
	if err != nil {
		return err
	}
	for _, d := range entries {
		if err := w.walk(path.Join(rel, d.Name())); err != nil {
			return err
		}
	}
	return nil
}

// sum returns the hex SHA-256 of file name with inode ino.
func (w *walker) sum(name string, ino uint64) (string, error) {
	if s, ok := w.hashes[ino]; ok {
		return s, nil
	}
	f, err := os.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, w.buf); err != nil {
		return "", err
	}
	s := hex.EncodeToString(h.Sum(nil))
	w.hashes[ino] = s
	return s, nil
}

// xattrs returns the extended attributes of name outside the security
// namespace (labels that the system, not the tree, decides), or nil.
func xattrs(name string) (map[string]string, error) {
	size, err := unix.Llistxattr(name, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, &fs.PathError{Op: "listxattr", Path: name, Err: err}
	}
	if size == 0 {
		return nil, nil
	}
	list := make([]byte, size)
	if size, err = unix.Llistxattr(name, list); err != nil {
		return nil, &fs.PathError{Op: "listxattr", Path: name, Err: err}
	}
	var out map[string]string
	for _, key := range strings.Split(strings.TrimSuffix(string(list[:size]), "\x00"), "\x00") {
		if key == "" || strings.HasPrefix(key, "security.") {
			continue
		}
		n, err := unix.Lgetxattr(name, key, nil)
		if err != nil {
			return nil, &fs.PathError{Op: "getxattr " + key, Path: name, Err: err}
		}
		val := make([]byte, n)
		if n, err = unix.Lgetxattr(name, key, val); err != nil {
			return nil, &fs.PathError{Op: "getxattr " + key, Path: name, Err: err}
		}
		if out == nil {
			out = map[string]string{}
		}
		out[key] = string(val[:n])
	}
	return out, nil
}

// Diff lists the differences between two sorted descriptions from
// [Walk], one line per differing field, as "path: field a != b", and
// "path: only in a" or "path: only in b" for entries missing on one
// side. Paths with control characters are quoted. With ignoreInode,
// inode numbers are not compared; instead each file's hardlink group
// (the other paths with its inode) must be the same on both sides.
// Diff returns nil when the trees are alike.
func Diff(a, b []Entry, ignoreInode bool) []string {
	var out []string
	var groupsA, groupsB map[string]string
	if ignoreInode {
		groupsA, groupsB = linkGroups(a), linkGroups(b)
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i].Path < b[j].Path:
			out = append(out, showPath(a[i].Path)+": only in a")
			i++
		case i == len(a) || b[j].Path < a[i].Path:
			out = append(out, showPath(b[j].Path)+": only in b")
			j++
		default:
			out = append(out, diffEntry(&a[i], &b[j], ignoreInode, groupsA, groupsB)...)
			i++
			j++
		}
	}
	return out
}

func diffEntry(x, y *Entry, ignoreInode bool, groupsX, groupsY map[string]string) []string {
	var out []string
	p := showPath(x.Path)
	add := func(field string, a, b any) {
		out = append(out, fmt.Sprintf("%s: %s %v != %v", p, field, a, b))
	}
	if x.Type != y.Type {
		add("type", x.Type, y.Type)
	}
	if x.Mode != y.Mode {
		add("mode", octalMode(x.Mode), octalMode(y.Mode))
	}
	if x.Size != y.Size {
		add("size", x.Size, y.Size)
	}
	if x.MTimeNs != y.MTimeNs {
		add("mtime", showTime(x.MTimeNs), showTime(y.MTimeNs))
	}
	if x.Target != y.Target {
		add("target", strconv.Quote(x.Target), strconv.Quote(y.Target))
	}
	if x.SHA256 != y.SHA256 {
		add("sha256", orNone(x.SHA256), orNone(y.SHA256))
	}
	if x.Nlink != y.Nlink {
		add("nlink", x.Nlink, y.Nlink)
	}
	keys := make([]string, 0, len(x.Xattrs)+len(y.Xattrs))
	for k := range x.Xattrs {
		keys = append(keys, k)
	}
	for k := range y.Xattrs {
		if _, ok := x.Xattrs[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		vx, okx := x.Xattrs[k]
		vy, oky := y.Xattrs[k]
		if vx != vy || okx != oky {
			add("xattr "+k, quoteOrNone(vx, okx), quoteOrNone(vy, oky))
		}
	}
	if ignoreInode {
		if gx, gy := groupsX[x.Path], groupsY[y.Path]; gx != gy {
			add("hardlinks", "["+gx+"]", "["+gy+"]")
		}
	} else if x.Inode != y.Inode {
		add("inode", x.Inode, y.Inode)
	}
	return out
}

// linkGroups maps the path of each regular file that shares its inode
// with others to the other paths, quoted and space-separated.
func linkGroups(list []Entry) map[string]string {
	byInode := map[uint64][]string{}
	for i := range list {
		if list[i].Type == "file" {
			byInode[list[i].Inode] = append(byInode[list[i].Inode], list[i].Path)
		}
	}
	groups := map[string]string{}
	for _, paths := range byInode {
		if len(paths) < 2 {
			continue
		}
		slices.Sort(paths)
		for _, p := range paths {
			var others []string
			for _, q := range paths {
				if q != p {
					others = append(others, strconv.Quote(q))
				}
			}
			groups[p] = strings.Join(others, " ")
		}
	}
	return groups
}

// octalMode shows m the way chmod takes it: 0644, 04755.
func octalMode(m fs.FileMode) string {
	n := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n |= 0o1000
	}
	return fmt.Sprintf("0%03o", n)
}

func showTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

func showPath(p string) string {
	if strings.ContainsFunc(p, unicode.IsControl) {
		return strconv.Quote(p)
	}
	return p
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func quoteOrNone(v string, ok bool) string {
	if !ok {
		return "(none)"
	}
	return strconv.Quote(v)
}
