package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/appliance"
	"github.com/spf13/cobra"
)

type initOptions struct {
	packSize    string
	compression string
	chunkMin    string
	chunkAvg    string
	chunkMax    string
}

func newInitCommand(g *globalOptions) *cobra.Command {
	o := &initOptions{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "create a repository",
		Long: `Create a repository in --repo with a new random master key.

With --password-file the key is wrapped with a passphrase (argon2id).
Otherwise cairn writes a key file for unattended appliances, by default
next to the repository (DIR.key), never inside it: keep a copy of it off
this machine, without it the backups cannot be read.

--repo s3://HOST[:PORT]/BUCKET[/PREFIX] (or s3+http:// for a plain-HTTP
store on loopback or a LAN) creates the repository in an existing bucket,
under PREFIX, which must hold no repository objects. The key file, the
appliance's configuration and host key then go to the state directory
(--state-dir, default /var/lib/cairn/s3/ENDPOINT/BUCKET[/PREFIX]) as
cairn.key, cairn.yaml and cairn.host_key; the index to the cache directory
(--cache-dir, default /var/cache/cairn/REPOSITORY-ID). With
--s3-credentials FILE the configuration names FILE as s3_credentials.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runInit(cmd, g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.packSize, "pack-size", "16MiB", "size at which packs are closed")
	f.StringVar(&o.compression, "compression", "default", "zstd level: fastest, default or better")
	f.StringVar(&o.chunkMin, "chunk-min", "512KiB", "smallest chunk")
	f.StringVar(&o.chunkAvg, "chunk-avg", "1MiB", "average chunk (a power of two)")
	f.StringVar(&o.chunkMax, "chunk-max", "8MiB", "largest chunk")
	return cmd
}

func runInit(cmd *cobra.Command, g *globalOptions, o *initOptions) error {
	if err := g.requireRepo(); err != nil {
		return err
	}
	var io repo.InitOptions
	io.Compression = o.compression
	for _, s := range []struct {
		flag, val string
		dst       *int
	}{
		{"--pack-size", o.packSize, &io.PackSize},
		{"--chunk-min", o.chunkMin, &io.Chunker.Min},
		{"--chunk-avg", o.chunkAvg, &io.Chunker.Avg},
		{"--chunk-max", o.chunkMax, &io.Chunker.Max},
	} {
		n, err := parseSize(s.val)
		if err != nil {
			return usageError{fmt.Errorf("%s: %w", s.flag, err)}
		}
		*s.dst = int(n)
	}
	cred, err := g.credentials()
	if err != nil {
		return err
	}
	place, err := g.place()
	if err != nil {
		return err
	}
	ro, err := g.repoOptions(repo.Options{Logger: g.logger()})
	if err != nil {
		return err
	}
	io.StateDir, io.S3, io.Logger = ro.StateDir, ro.S3, ro.Logger
	keyFile, err := repo.Init(cmd.Context(), place.String(), cred, io)
	if ke, ok := errors.AsType[*repo.KeyFileExistsError](err); ok {
		return reword(err, ke, ke.Error()+" with --key-file")
	}
	if err != nil {
		return err
	}
	r, err := repo.Open(cmd.Context(), place.String(), cred, ro)
	if err != nil {
		return err
	}
	defer r.Close()
	cfg := r.Config()
	abs := place.String()
	fp, err := appliance.GenerateHostKey(appliance.HostKeyPath(place))
	if err != nil {
		return err
	}
	confPath := appliance.ConfigPath(place)
	if _, err := os.Stat(confPath); os.IsNotExist(err) {
		text := appliance.DefaultConfigText
		if place.ObjectStore() && g.s3Creds != "" {
			// serve and the other commands find the credentials here.
			text += "\n# s3_credentials: the S3 credentials of the repository's object store (mode 0600).\ns3_credentials: " + g.abs(g.s3Creds) + "\n"
		}
		if err := os.WriteFile(confPath, []byte(text), 0o600); err != nil {
			return err
		}
	}
	if g.json {
		out := map[string]any{"id": cfg.ID, "repo": abs, "key_file": keyFile, "chunker": cfg.Chunker, "pack_size": cfg.PackSize,
			"compression": cfg.Compression, "host_key": fp, "config": confPath}
		if place.ObjectStore() {
			out["state_dir"], out["cache_dir"] = place.StateDir(), r.CacheDir()
		}
		return g.printJSON(out)
	}
	g.printf("created repository %s at %s\n", cfg.ID.Short(), abs)
	if place.ObjectStore() {
		g.printf("state directory (key file, configuration, host key): %s\ncache directory (index, rebuilt from the bucket when lost): %s\n", place.StateDir(), r.CacheDir())
	}
	if keyFile != "" {
		g.printf("key file: %s\nkeep a copy of the key file off this machine: without it the backups cannot be read\n", keyFile)
	}
	g.printf("appliance host key: %s\nappliance configuration: %s\n", fp, confPath)
	return nil
}
