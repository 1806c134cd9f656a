package chunker

import (
	"fmt"
	"math/bits"
)

// Limits checked by [Params.Validate].
const (
	minLimit = 64       // smallest Min
	maxLimit = 64 << 20 // largest Max
)

// Params holds the chunk size bounds, in bytes. Every chunk but the last
// of a stream is between Min and Max bytes long; the sizes cluster around
// Avg. Params are part of the repository format: the same bytes chunked
// with different Params give different chunks.
type Params struct {
	Min int // smallest chunk, except the last of a stream; at least 64
	Avg int // target chunk size; a power of two
	Max int // largest chunk; at most 64 MiB
}

// DefaultParams are the chunk sizes cairn repositories use unless told
// otherwise: at least 512 KiB, around 1 MiB, at most 8 MiB.
var DefaultParams = Params{Min: 512 << 10, Avg: 1 << 20, Max: 8 << 20}

// Validate reports whether p can be used by [New]: Min is at least 64,
// Avg is a power of two, Min < Avg < Max, and Max is at most 64 MiB.
// It returns the first rule p breaks.
func (p Params) Validate() error {
	switch {
	case p.Min < minLimit:
		return fmt.Errorf("chunker: min %d is less than %d", p.Min, minLimit)
	case p.Avg <= 0 || p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("chunker: avg %d is not a power of two", p.Avg)
	case p.Min >= p.Avg:
		return fmt.Errorf("chunker: min %d is not less than avg %d", p.Min, p.Avg)
	case p.Avg >= p.Max:
		return fmt.Errorf("chunker: avg %d is not less than max %d", p.Avg, p.Max)
	case p.Max > maxLimit:
		return fmt.Errorf("chunker: max %d is greater than %d", p.Max, maxLimit)
	}
	return nil
}

// masks returns the judgement masks of normalised chunking (FastCDC
// level 2) for a valid p: hard has log2(Avg)+2 one-bits and is used from
// Min up to Avg, easy has log2(Avg)-2 one-bits and is used from Avg up to
// Max. Both select the top bits of the gear fingerprint.
func (p Params) masks() (hard, easy uint64) {
	avgBits := bits.TrailingZeros(uint(p.Avg))
	hard = ^uint64(0) << (64 - (avgBits + 2))
	easy = ^uint64(0) << (64 - (avgBits - 2))
	return hard, easy
}
