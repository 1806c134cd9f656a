package repo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cairnbackup/cairn/chunker"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
)

// FormatVersion is the repository format written by this build.
const FormatVersion = 1

// DefaultPackSize is the size at which a pack is closed.
const DefaultPackSize = 16 << 20

// Config is the sealed repository configuration stored as the file config.
type Config struct {
	Version     int           `json:"version"`
	ID          blob.ID       `json:"id"`
	Created     time.Time     `json:"created"`
	Chunker     ChunkerParams `json:"chunker"`
	PackSize    int           `json:"pack_size"`
	Compression string        `json:"compression"`
}

// ChunkerParams are the content-defined chunking sizes of a repository.
// They are fixed at init: changing them would change every chunk
// boundary and defeat deduplication against existing data.
type ChunkerParams struct {
	Min int `json:"min"`
	Avg int `json:"avg"`
	Max int `json:"max"`
}

// Params converts to the chunker's type.
func (p ChunkerParams) Params() chunker.Params {
	return chunker.Params{Min: p.Min, Avg: p.Avg, Max: p.Max}
}

const configAAD = "cairn v1 config"

// Compression levels by name, as accepted in [Config.Compression].
var compressionLevels = map[string]pack.Level{
	"fastest": pack.LevelFastest,
	"default": pack.LevelDefault,
	"better":  pack.LevelBetter,
}

func (c *Config) validate() error {
	if c.Version != FormatVersion {
		return fmt.Errorf("repository format version %d is not supported by this build (it reads version %d)", c.Version, FormatVersion)
	}
	if err := c.Chunker.Params().Validate(); err != nil {
		return err
	}
	if c.Chunker.Max > blob.MaxSize {
		return fmt.Errorf("chunker max %d exceeds the blob limit %d", c.Chunker.Max, blob.MaxSize)
	}
	if c.PackSize < 1<<20 || c.PackSize > 128<<20 {
		return fmt.Errorf("pack size %d is outside 1 MiB to 128 MiB", c.PackSize)
	}
	if _, ok := compressionLevels[c.Compression]; !ok {
		return fmt.Errorf("unknown compression %q (use fastest, default or better)", c.Compression)
	}
	return nil
}

func decodeConfig(b []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w: %w", err, blob.ErrCorrupt)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}

func jsonMarshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return b, nil
}
