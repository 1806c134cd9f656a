package integration

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Mounts of the cairn file system left by an earlier run whose server
// died (the test binary killed, say) answer "transport endpoint is not
// connected" and make t.TempDir's cleanup fail. They are detached before
// any test runs. Live mounts, served by a process that still runs, are
// left alone: they may be someone's real mount.
func init() {
	for _, dir := range cairnMounts() {
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); errors.Is(err, syscall.ENOTCONN) {
			exec.Command("umount", "-l", dir).Run()
		}
	}
}

// cairnMounts lists the mount points of fuse.cairn file systems, as
// /proc/mounts shows them.
func cairnMounts() []string {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// SOURCE MOUNTPOINT FSTYPE OPTIONS 0 0
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && strings.HasPrefix(fields[2], "fuse.cairn") {
			out = append(out, unescapeMount(fields[1]))
		}
	}
	return out
}

// unescapeMount undoes the octal escapes of /proc/mounts (\040 for a
// space and so on).
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if c, ok := octal3(s[i+1 : i+4]); ok {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal3(s string) (byte, bool) {
	var n int
	for _, c := range []byte(s) {
		if c < '0' || c > '7' {
			return 0, false
		}
		n = n*8 + int(c-'0')
	}
	return byte(n), n < 256
}
