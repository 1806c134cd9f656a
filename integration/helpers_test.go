package integration

import (
	"encoding/json"
	"os/user"
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
