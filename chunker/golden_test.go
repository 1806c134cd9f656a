package chunker

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.json")

// The cut points are part of the repository format. testdata/golden.json
// pins them; regenerating it with -update is a format change.
const goldenPath = "testdata/golden.json"

type golden struct {
	Table goldenTable  `json:"table"`
	Cases []goldenCase `json:"cases"`
}

type goldenTable struct {
	Seed   string   `json:"seed"`   // hex
	Words  []string `json:"words"`  // the first words, hex
	SHA256 string   `json:"sha256"` // of all 256 words, big-endian
}

type goldenCase struct {
	Name   string        `json:"name"`
	Seed   string        `json:"seed"` // table seed, hex
	Params goldenParams  `json:"params"`
	Input  goldenInput   `json:"input"`
	Chunks []goldenChunk `json:"chunks"`
}

type goldenParams struct {
	Min int `json:"min"`
	Avg int `json:"avg"`
	Max int `json:"max"`
}

// goldenInput describes a generated input: "random" is splitmix64 output
// from Seed written little-endian, "dna" is one of "ACGT" per splitmix64
// output (top two bits), "zeros" is zero bytes.
type goldenInput struct {
	Gen  string `json:"gen"`
	Seed uint64 `json:"seed"`
	Size int    `json:"size"`
}

type goldenChunk struct {
	Len    int    `json:"len"`
	SHA256 string `json:"sha256"`
}

func (in goldenInput) bytes() []byte {
	switch in.Gen {
	case "random":
		return randomBytes(in.Seed, in.Size)
	case "dna":
		return dnaBytes(in.Seed, in.Size)
	case "zeros":
		return make([]byte, in.Size)
	}
	panic("unknown generator " + in.Gen)
}

// goldenCases lists the cases and their inputs; the chunks come from the
// chunker (with -update) or the golden file.
func goldenCases() []goldenCase {
	gp := func(p Params) goldenParams { return goldenParams(p) }
	seed0, seed1 := testSeed(0), testSeed(0x80)
	s0, s1 := hex.EncodeToString(seed0[:]), hex.EncodeToString(seed1[:])
	return []goldenCase{
		{Name: "default-random-40MiB", Seed: s0, Params: gp(DefaultParams), Input: goldenInput{"random", 1, 40 << 20}},
		{Name: "default-random-40MiB-seed80", Seed: s1, Params: gp(DefaultParams), Input: goldenInput{"random", 1, 40 << 20}},
		{Name: "default-dna-12MiB", Seed: s0, Params: gp(DefaultParams), Input: goldenInput{"dna", 2, 12 << 20}},
		{Name: "default-zeros-17MiB", Seed: s0, Params: gp(DefaultParams), Input: goldenInput{"zeros", 0, 17<<20 + 5}},
		{Name: "small-random-1MiB", Seed: s0, Params: gp(smallParams), Input: goldenInput{"random", 3, 1 << 20}},
		{Name: "tiny-random-8KiB", Seed: s0, Params: gp(tinyParams), Input: goldenInput{"random", 4, 8 << 10}},
		{Name: "tiny-random-8KiB-seed80", Seed: s1, Params: gp(tinyParams), Input: goldenInput{"random", 4, 8 << 10}},
		{Name: "tiny-dna-4KiB", Seed: s0, Params: gp(tinyParams), Input: goldenInput{"dna", 5, 4 << 10}},
		{Name: "tiny-zeros-3KiB", Seed: s0, Params: gp(tinyParams), Input: goldenInput{"zeros", 0, 3<<10 + 1}},
	}
}

func goldenTableOf(seed [32]byte) goldenTable {
	t := NewTable(seed)
	gt := goldenTable{Seed: hex.EncodeToString(seed[:])}
	for _, w := range t[:8] {
		gt.Words = append(gt.Words, fmt.Sprintf("%016x", w))
	}
	h := sha256.New()
	for _, w := range t {
		h.Write(binary.BigEndian.AppendUint64(nil, w))
	}
	gt.SHA256 = hex.EncodeToString(h.Sum(nil))
	return gt
}

func runGoldenCase(t *testing.T, c goldenCase) []goldenChunk {
	seed, err := hex.DecodeString(c.Seed)
	if err != nil || len(seed) != 32 {
		t.Fatalf("bad seed %q", c.Seed)
	}
	p := Params{c.Params.Min, c.Params.Avg, c.Params.Max}
	data := c.Input.bytes()
	chunks := chunkAll(t, bytes.NewReader(data), p, NewTable([32]byte(seed)))
	checkChunks(t, chunks, data, p)
	out := make([]goldenChunk, len(chunks))
	for i, ch := range chunks {
		sum := sha256.Sum256(ch)
		out[i] = goldenChunk{len(ch), hex.EncodeToString(sum[:])}
	}
	return out
}

func TestGolden(t *testing.T) {
	t.Parallel()
	cases := goldenCases()
	if *update {
		g := golden{Table: goldenTableOf(testSeed(0))}
		for _, c := range cases {
			c.Chunks = runGoldenCase(t, c)
			g.Cases = append(g.Cases, c)
		}
		b, err := json.MarshalIndent(g, "", "\t")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", goldenPath)
		return
	}

	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}

	t.Run("table", func(t *testing.T) {
		got := goldenTableOf(testSeed(0))
		if got.Seed != g.Table.Seed || fmt.Sprint(got.Words) != fmt.Sprint(g.Table.Words) || got.SHA256 != g.Table.SHA256 {
			t.Fatalf("NewTable changed:\ngot  %+v\nwant %+v", got, g.Table)
		}
	})

	if len(g.Cases) != len(cases) {
		t.Fatalf("golden file has %d cases, the test %d; run with -update after a deliberate change", len(g.Cases), len(cases))
	}
	for i, c := range cases {
		want := g.Cases[i]
		t.Run(c.Name, func(t *testing.T) {
			if c.Name != want.Name || c.Seed != want.Seed || c.Params != want.Params || c.Input != want.Input {
				t.Fatalf("case definition differs from the golden file:\ngot  %+v\nwant %+v", c, want)
			}
			got := runGoldenCase(t, c)
			if i := firstDiff(got, want.Chunks); i >= 0 {
				t.Fatalf("got %d chunks, want %d; chunk %d differs: got %+v, want %+v",
					len(got), len(want.Chunks), i, at(got, i), at(want.Chunks, i))
			}
		})
	}
}

// at returns s[i], or the zero value past the end.
func at[T any](s []T, i int) T {
	var zero T
	if i < len(s) {
		return s[i]
	}
	return zero
}
