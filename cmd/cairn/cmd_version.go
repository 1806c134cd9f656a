package main

import (
	"cmp"
	"fmt"
	"runtime/debug"

	"github.com/cairnbackup/cairn/repo"
	"github.com/spf13/cobra"
)

// version and commit are stamped at build time by `make build` and
// `make package`:
//
//	go build -ldflags "-X main.version=$(git describe --tags --always --dirty) -X main.commit=$(git rev-parse HEAD)"
//
// Without them, buildInfo falls back to what the Go toolchain recorded
// (the module version of `go install …@vX`, the VCS revision of a build
// in a checkout), and else to "dev" and "unknown".
var (
	version = ""
	commit  = ""
)

// buildInfo is what `cairn version` prints and the appliance exports as
// cairn_build_info.
type buildInfo struct {
	Version          string `json:"version"`
	Commit           string `json:"commit"`
	Go               string `json:"go"`
	RepositoryFormat int    `json:"repository_format"`
}

// currentBuild returns the version, commit and Go version of this binary.
func currentBuild() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Go: "unknown", RepositoryFormat: repo.FormatVersion}
	if bi, ok := debug.ReadBuildInfo(); ok {
		b.Go = bi.GoVersion
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		if b.Commit == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			b.Commit = rev
		}
	}
	b.Version = cmp.Or(b.Version, "dev")
	b.Commit = cmp.Or(b.Commit, "unknown")
	return b
}

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version [--json]",
		Short: "print the version, commit, Go version and repository format",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := currentBuild()
			if g.json {
				return g.printJSON(b)
			}
			g.printf("cairn %s\ncommit:            %s\ngo:                %s\nrepository format: %d\n", b.Version, b.Commit, b.Go, b.RepositoryFormat)
			return nil
		},
	}
}

// String is the one-line form, for logs.
func (b buildInfo) String() string {
	return fmt.Sprintf("cairn %s (commit %s, %s, repository format %d)", b.Version, b.Commit, b.Go, b.RepositoryFormat)
}
