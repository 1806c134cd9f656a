package integration

import (
	"encoding/json"
	"os/user"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/repo/repotest"
)

func repotestAssertSame(t *testing.T, want, got string) { repotest.AssertSameTree(t, want, got) }

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func userCurrent() (string, error) {
	u, err := user.Current()
	if err != nil {
		return "", err
	}
	return u.Username, nil
}

func repotestWrite(t *testing.T, dir string, files map[string]string) {
	repotest.WriteTree(t, dir, files)
}

func slicesEqual(a, b []string) bool { return slices.Equal(a, b) }
