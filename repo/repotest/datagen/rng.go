package datagen

import (
	"encoding/binary"
	"math/bits"
)

// rng is xoshiro256** (Blackman and Vigna), seeded through splitmix64.
// Its output depends only on the seed: no floating point, no maps, no
// math/rand, so every platform and Go version draws the same numbers.
type rng struct {
	s0, s1, s2, s3 uint64
}

// splitmix64 advances *x and returns the next splitmix64 output.
func splitmix64(x *uint64) uint64 {
	*x += 0x9e3779b97f4a7c15
	return mix64(*x)
}

// mix64 is the splitmix64 finaliser: a bijective 64-bit mixer.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// hashString is 64-bit FNV-1a, spelled out so that nothing outside this
// file can change it.
func hashString(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}

// derive returns the seed of an independent stream named by label and n
// under seed. Streams for different labels or numbers do not overlap in
// practice, so one part of a tree does not shift when another changes.
func derive(seed uint64, label string, n uint64) uint64 {
	return mix64(seed ^ mix64(hashString(label)) ^ mix64(n+0x632be59bd9b4e019))
}

// newRNG returns a generator whose state is filled from seed by
// splitmix64.
func newRNG(seed uint64) *rng {
	x := seed
	r := &rng{splitmix64(&x), splitmix64(&x), splitmix64(&x), splitmix64(&x)}
	if r.s0|r.s1|r.s2|r.s3 == 0 { // the one forbidden state; splitmix64 never yields it
		r.s0 = 1
	}
	return r
}

// uint64 returns the next 64 random bits.
func (r *rng) uint64() uint64 {
	result := bits.RotateLeft64(r.s1*5, 7) * 9
	t := r.s1 << 17
	r.s2 ^= r.s0
	r.s3 ^= r.s1
	r.s1 ^= r.s2
	r.s0 ^= r.s3
	r.s2 ^= t
	r.s3 = bits.RotateLeft64(r.s3, 45)
	return result
}

// intn returns a number in [0, n) by Lemire's multiply-shift; n must be
// positive. The bias (below 2^-32 for the sizes used here) is
// irrelevant for test data and the mapping is exact integer arithmetic.
func (r *rng) intn(n int) int {
	hi, _ := bits.Mul64(r.uint64(), uint64(n))
	return int(hi)
}

// int63n is intn for int64 bounds.
func (r *rng) int63n(n int64) int64 {
	hi, _ := bits.Mul64(r.uint64(), uint64(n))
	return int64(hi)
}

// between returns a number in [lo, hi]; hi must not be below lo.
func (r *rng) between(lo, hi int) int {
	return lo + r.intn(hi-lo+1)
}

// chance reports true with probability 1/n.
func (r *rng) chance(n int) bool {
	return r.intn(n) == 0
}

// pick returns a random element of list, which must not be empty.
func pick[T any](r *rng, list []T) T {
	return list[r.intn(len(list))]
}

// fill overwrites b with random bytes, eight at a time, little-endian.
// The stream of words does not depend on how the caller splits it as
// long as every piece but the last has a length divisible by eight.
func (r *rng) fill(b []byte) {
	s0, s1, s2, s3 := r.s0, r.s1, r.s2, r.s3
	for len(b) >= 32 { // unrolled: four words per iteration
		for i := 0; i < 32; i += 8 {
			binary.LittleEndian.PutUint64(b[i:], bits.RotateLeft64(s1*5, 7)*9)
			t := s1 << 17
			s2 ^= s0
			s3 ^= s1
			s1 ^= s2
			s0 ^= s3
			s2 ^= t
			s3 = bits.RotateLeft64(s3, 45)
		}
		b = b[32:]
	}
	r.s0, r.s1, r.s2, r.s3 = s0, s1, s2, s3
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, r.uint64())
		b = b[8:]
	}
	if len(b) > 0 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.uint64())
		copy(b, w[:])
	}
}
