package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/spf13/cobra"
)

func newConfigCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "the appliance configuration: config check [FILE]",
		Args:  cobra.NoArgs,
		// Never relayed to a running appliance (the root's hook would):
		// it reads one file, and needs neither the repository nor its key.
		PersistentPreRunE: func(*cobra.Command, []string) error { return g.startProfile() },
	}
	cmd.AddCommand(newConfigCheckCommand(g))
	return cmd
}

// configCheckJSON is what config check --json prints.
type configCheckJSON struct {
	File     string              `json:"file"`
	OK       bool                `json:"ok"`
	Nodes    int                 `json:"nodes"`
	Jobs     int                 `json:"jobs"`
	Listen   string              `json:"listen,omitempty"`
	Metrics  string              `json:"metrics,omitempty"`
	Problems []appliance.Problem `json:"problems"`
}

func newConfigCheckCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "check [FILE]",
		Short: "check the appliance configuration file as cairn serve does",
		Long: `Check an appliance configuration file (default: DIR.yaml beside the
repository DIR) with the same function cairn serve and a reload
(SIGHUP) run before they use any of it: the YAML, unknown keys, the
type of every value, the listen and metrics addresses, the limits, the
retention policies and time zone, the expected backup spans, the job
schedules and probes, and every node's name, keys and permissions.

It needs neither the repository nor its key, nor a running appliance.
Valid, it prints "FILE: ok (N nodes, M jobs)". Otherwise it lists every
problem, not only the first, one per line as FILE:LINE: KEY: message
(LINE is the line of the key, or of the nearest enclosing key when the
key is missing).

Exit code 0: valid. 1: the file has problems, or cannot be read.
2: usage (no FILE and no --repo).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var path string
			switch {
			case len(args) == 1:
				path = g.abs(args[0])
			case g.repoDir != "":
				path = g.configPath("")
			default:
				return usageError{errors.New("config check: give FILE, or --repo DIR (or CAIRN_REPO) for DIR.yaml")}
			}
			cfg, err := appliance.LoadConfig(path)
			problems := appliance.Problems(err)
			if err != nil && problems == nil {
				return err // missing or unreadable: nothing was checked
			}
			if g.json {
				out := configCheckJSON{File: path, OK: err == nil, Problems: problems}
				if out.Problems == nil {
					out.Problems = []appliance.Problem{}
				}
				if cfg != nil {
					out.Nodes, out.Jobs, out.Listen, out.Metrics = len(cfg.Nodes), cfg.Jobs.Scheduled(), cfg.Listen, cfg.Metrics
				}
				if err := g.printJSON(out); err != nil {
					return err
				}
			} else if err == nil {
				g.printf("%s: ok (%s, %s)\n", path, plural(len(cfg.Nodes), "node"), plural(cfg.Jobs.Scheduled(), "job"))
			} else {
				for _, p := range problems {
					g.printf("%s\n", p.Error())
				}
			}
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("%s: %s", path, plural(len(problems), "problem"))}
			}
			return nil
		},
	}
}

// plural is "1 node", "2 nodes".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// loadConfig reads the appliance configuration for a command: the file
// named with --config, which must exist, or DIR.yaml beside the
// repository, which may be missing (then the defaults: no nodes, no
// jobs, no policies). A file with problems lists each on its own line.
func (g *globalOptions) loadConfig(config string) (*appliance.Config, error) {
	path := g.configPath(config)
	cfg, err := appliance.LoadConfig(path)
	if config == "" && errors.Is(err, fs.ErrNotExist) {
		return appliance.DefaultConfig(path), nil
	}
	if err != nil {
		return nil, eachLine(err)
	}
	return cfg, nil
}
