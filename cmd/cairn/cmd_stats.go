package main

import (
	"context"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/stats"
	"github.com/spf13/cobra"
)

func newStatsCommand(g *globalOptions) *cobra.Command {
	f := &filterOptions{}
	cmd := &cobra.Command{
		Use:   "stats [SNAPSHOT...]",
		Short: "show repository sizes, compression and deduplication",
		Long: `Show what the repository holds and how well it compresses and
deduplicates:

  snapshots          the snapshots counted below: all of them, those
                     passing --node, --plan, --tag and --path, or the
                     SNAPSHOTs given (ID prefixes or "latest")
  packs, blobs       in the whole repository (data and tree blobs)
  stored size        the sum of the pack files' sizes
  plaintext size     every blob before compression and encryption
  compression ratio  plaintext size / stored size of all blobs
  logical size       the files of the counted snapshots, as backed up
                     (from each snapshot's summary)
  unique data        the data blobs (chunks) those snapshots reference,
                     each counted once
  dedup ratio        logical size / unique data

For all snapshots, unique data is taken from the index; it also counts
chunks no snapshot references any more (from interrupted backups).
For a selection, stats reads the trees of the chosen snapshots (each
shared subtree once) and keeps the ID of every chunk they reference in
memory: about 100 bytes per chunk and per directory, or about 100 MiB
for 1 TiB of unique data in 1 MiB chunks.

With --json, prints one JSON object with these figures in bytes.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStats(cmd.Context(), g, f, args)
		},
	}
	f.register(cmd)
	return cmd
}

// statsJSON is the output of stats --json.
type statsJSON struct {
	Scope            string  `json:"scope"` // "all" or "selected"
	Snapshots        int     `json:"snapshots"`
	Packs            uint64  `json:"packs"`
	Blobs            uint64  `json:"blobs"`
	DataBlobs        uint64  `json:"data_blobs"`
	TreeBlobs        uint64  `json:"tree_blobs"`
	StoredBytes      uint64  `json:"stored_bytes"`      // sum of pack sizes
	BlobBytes        uint64  `json:"blob_bytes"`        // sum of the sealed blob envelopes
	PlaintextBytes   uint64  `json:"plaintext_bytes"`   // sum of every blob's plaintext
	CompressionRatio float64 `json:"compression_ratio"` // plaintext_bytes / blob_bytes
	LogicalBytes     uint64  `json:"logical_bytes"`     // files in the counted snapshots
	UniqueDataBlobs  uint64  `json:"unique_data_blobs"`
	UniqueBytes      uint64  `json:"unique_bytes"` // plaintext of the data blobs they reference
	DedupRatio       float64 `json:"dedup_ratio"`  // logical_bytes / unique_bytes
}

func runStats(ctx context.Context, g *globalOptions, f *filterOptions, refs []string) error {
	r, release, err := g.open(ctx, repo.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer release()
	flt := f.filter()
	list, err := selectSnapshots(ctx, r, refs, flt)
	if err != nil {
		return err
	}
	all := len(refs) == 0 && flt.Node == "" && flt.Plan == "" && len(flt.Tags) == 0 && flt.Path == ""
	st := statsJSON{Scope: "selected", Snapshots: len(list)}
	if all {
		st.Scope = "all"
	}
	err = r.PackRecords(func(p repo.PackRecord) error {
		st.Packs++
		st.StoredBytes += uint64(p.Size)
		return nil
	})
	if err != nil {
		return err
	}
	err = r.IndexedBlobs(func(h blob.Handle, loc repo.Location) error {
		st.Blobs++
		st.BlobBytes += uint64(loc.Length)
		st.PlaintextBytes += uint64(loc.RawLength)
		switch h.Type {
		case blob.Data:
			st.DataBlobs++
			if all {
				st.UniqueDataBlobs++
				st.UniqueBytes += uint64(loc.RawLength)
			}
		case blob.Tree:
			st.TreeBlobs++
		}
		return nil
	})
	if err != nil {
		return err
	}
	u := stats.NewUsage(r, !all)
	for _, sn := range list {
		size, err := u.Logical(ctx, sn, !all)
		if err != nil {
			return err
		}
		st.LogicalBytes += size
	}
	if !all {
		st.UniqueDataBlobs, st.UniqueBytes = u.Unique()
	}
	st.CompressionRatio = ratio(st.PlaintextBytes, st.BlobBytes)
	st.DedupRatio = ratio(st.LogicalBytes, st.UniqueBytes)
	if g.json {
		return g.printJSON(st)
	}
	line := func(label, format string, args ...any) {
		g.printf("%-19s"+format+"\n", append([]any{label + ":"}, args...)...)
	}
	line("snapshots", "%d (%s)", st.Snapshots, st.Scope)
	line("packs", "%d", st.Packs)
	line("blobs", "%d (%d data, %d tree)", st.Blobs, st.DataBlobs, st.TreeBlobs)
	line("stored size", "%s (sum of pack sizes)", humanBytes(st.StoredBytes))
	line("plaintext size", "%s (all blobs, before compression)", humanBytes(st.PlaintextBytes))
	line("compression ratio", "%.2fx (plaintext / %s of sealed blobs)", st.CompressionRatio, humanBytes(st.BlobBytes))
	line("logical size", "%s (files in %d snapshots)", humanBytes(st.LogicalBytes), st.Snapshots)
	line("unique data", "%s in %d chunks", humanBytes(st.UniqueBytes), st.UniqueDataBlobs)
	line("dedup ratio", "%.2fx (logical / unique data)", st.DedupRatio)
	return nil
}

// ratio is a / b, or 0 when b is 0 (JSON has no infinity).
func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
