// Package testenv is the one place where a test says it needs something
// of the machine: root, a program, a device, a file system feature.
// Where that is missing the test is skipped with a message saying what
// is missing; under CI=true, where .ci/run installs and provides
// everything the tests need, it fails instead, so a test never passes
// CI by not running.
//
// The package tests of repo/… import it like integration's own tests
// and helpers (sshtest, s3test); it imports only the standard library.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI (the environment variable
// CI is "true"), where nothing they need may be missing.
func CI() bool { return os.Getenv("CI") == "true" }

// Missing ends the test because the machine lacks what it needs, which
// the message says: the test is skipped, or under CI=true fails with
// "CI=true but " before the message.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatal("CI=true but " + msg)
		return // for a testing.TB whose Fatal returns (a test's recorder)
	}
	t.Skip(msg)
}

// RequireRoot ends the test with [Missing] unless it runs as root; why
// says what needs root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "not running as root: %s", why)
	}
}

// RequireProgram returns the path of the program name on the PATH, or
// ends the test with [Missing], naming the Debian package pkg that
// provides it.
func RequireProgram(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s is not installed (Debian package %s)", name, pkg)
	}
	return p
}
