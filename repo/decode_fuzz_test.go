package repo

import (
	"testing"

	"github.com/cairnbackup/cairn/repo/seal"
)

// FuzzDecodeConfig: the repository config is read from disk (after it
// authenticates); a config it accepts is one this build can work with.
func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`{"version":1,"id":"` + zeroID + `","created":"2026-11-26T00:00:00Z","chunker":{"min":524288,"avg":1048576,"max":8388608},"pack_size":16777216,"compression":"default"}`))
	f.Add([]byte(`{"version":1,"chunker":{"min":0,"avg":0,"max":0}}`))
	f.Add([]byte(`{"version":1,"extra":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeConfig(b)
		if err != nil {
			return
		}
		if err := c.validate(); err != nil || c.Chunker.Params().Validate() != nil {
			t.Fatalf("accepted an unusable config %+v: %v", c, err)
		}
	})
}

// FuzzDecodeKeyFile: the key file is read from disk beside the
// repository; one it accepts names a key and holds a whole secret.
func FuzzDecodeKeyFile(f *testing.F) {
	f.Add([]byte(`{"version":1,"repository":"` + zeroID + `","key":"5e3de0908b511704","secret":"` + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" + `"}`))
	f.Add([]byte(`{"version":1,"key":"","secret":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		kf, err := decodeKeyFile(b, "fuzz.key")
		if err != nil {
			return
		}
		if kf.Version != 1 || kf.Key == "" || len(kf.Secret) != seal.KeySize {
			t.Fatalf("accepted an incomplete key file: %+v", kf)
		}
	})
}

const zeroID = "0000000000000000000000000000000000000000000000000000000000000000"
