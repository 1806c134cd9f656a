package main

import "testing"

func TestDebianVersion(t *testing.T) {
	for _, c := range []struct {
		describe string
		commits  int
		want     string
	}{
		{"v1.2.3", 0, "1.2.3"},
		{"1.2.3", 0, "1.2.3"},
		{"v1.2.3-4-gabcdef0", 0, "1.2.3+4.gabcdef0"},
		{"v1.2.3-4-gabcdef0-dirty", 0, "1.2.3+4.gabcdef0.dirty"},
		{"v1.2.3-dirty", 0, "1.2.3+dirty"},
		{"a630a00", 125, "0.0.0~git.125.ga630a00"},
		{"a630a00-dirty", 126, "0.0.0~git.126.ga630a00.dirty"},
	} {
		got, err := debianVersion(c.describe, c.commits)
		if err != nil || got != c.want {
			t.Errorf("debianVersion(%q, %d) = %q, %v; want %q", c.describe, c.commits, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "dev", "v1.2", "1.2.3 rm -rf"} {
		if got, err := debianVersion(bad, 1); err == nil {
			t.Errorf("debianVersion(%q) = %q, want an error", bad, got)
		}
	}
}
