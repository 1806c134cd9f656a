package wire

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "create missing fuzz seeds (never overwrites existing ones)")

// decodeSeeds are the seed corpus of FuzzDecode: a type byte and a body.
// The valid ones are also the reference encoding of every message of
// versions 1 and 2: TestFuzzSeeds fails if the code stops producing them.
func decodeSeeds() map[string][]byte {
	seeds := make(map[string][]byte)
	for _, s := range samples() {
		b := s.m.Append([]byte{byte(s.t)})
		if len(b) > 4<<10 {
			continue // the fuzzer mutates small inputs better
		}
		seeds["valid-"+s.name] = b
	}
	invalid := map[string][]byte{
		"hello-bad-magic":      append([]byte{byte(TypeHello)}, "cairn-wirf\x00\x01\x00\x01\x00\x00\x00\x00"...),
		"have-blobs-count":     {byte(TypeHaveBlobs), 0, 0, 0, 1, 0, 1, 0x11, 0x70},
		"have-trailing-bits":   {byte(TypeHave), 0, 0, 0, 1, 0, 0, 0, 3, 0xf0},
		"snapshots-count":      {byte(TypeSnapshots), 0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff},
		"put-blob-zstd-longer": append(append([]byte{byte(TypePutBlob), 1}, make([]byte, 32)...), 1, 0, 0, 0, 2, 'a', 'b', 'c'),
		"stored-blob-raw-long": {byte(TypeStoredBlob), 0, 0, 0, 1, 0, 0, 0, 0, 2, 'a', 'b', 'c'},
		"unknown-type":         {0x7f, 1, 2, 3},
	}
	for name, b := range invalid {
		seeds[name] = b
	}
	return seeds
}

// readerSeeds are the seed corpus of FuzzReader: byte streams.
func readerSeeds() map[string][]byte {
	// The stream of version 1's frames is pinned as it was; version 2's
	// frame has a stream of its own.
	stream := func(v2 bool) []byte {
		var stream bytes.Buffer
		w := NewWriter(&stream)
		for _, s := range samples() {
			b := s.m.Append(nil)
			if len(b) > 1<<10 || (s.t == TypeStoredBlob) != v2 {
				continue
			}
			if err := w.WriteFrame(s.t, b); err != nil {
				panic(err)
			}
		}
		if err := w.Flush(); err != nil {
			panic(err)
		}
		return stream.Bytes()
	}
	all := stream(false)
	return map[string][]byte{
		"session":       all,
		"stored-blobs":  stream(true),
		"cut-body":      all[:len(all)-3],
		"cut-length":    append(all[:len(all):len(all)], 0, 0),
		"zero-length":   {0, 0, 0, 0, 0x19},
		"unknown-type":  {0, 0, 0, 1, 0x7f},
		"oversized":     {0x04, 0x00, 0x00, 0x42, 0x16, 1, 2, 3},
		"max-announced": {0x04, 0x00, 0x00, 0x41, 0x16, 1, 2, 3},
	}
}

// TestFuzzSeeds writes the seed corpora with -update when missing, and
// checks that the files hold what the seeds produce now.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range map[string]map[string][]byte{
		"FuzzDecode": decodeSeeds(),
		"FuzzReader": readerSeeds(),
	} {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, data := range seeds {
			path := filepath.Join(dir, name)
			if *update {
				writeIfMissing(t, path, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)))
			}
			got, err := readSeed(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("%s holds %x, want %x", path, got, data)
			}
		}
	}
}

func writeIfMissing(t *testing.T, path string, data []byte) {
	if _, err := os.Stat(path); err == nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readSeed parses a corpus file holding a single []byte value.
func readSeed(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	header, value, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if !ok || header != "go test fuzz v1" || !strings.HasPrefix(value, "[]byte(") || !strings.HasSuffix(value, ")") {
		return nil, fmt.Errorf("%s: not a go test fuzz v1 file of one []byte", path)
	}
	s, err := strconv.Unquote(value[len("[]byte(") : len(value)-1])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return []byte(s), nil
}

// FuzzReader reads frames from an arbitrary stream until an error. The
// frames read, written again, must give back the stream (all of it at a
// clean EOF, a prefix otherwise); no body may exceed its limit; and the
// reader may allocate only in proportion to the bytes it was given, never
// to a length it was announced.
func FuzzReader(f *testing.F) {
	seeds := readerSeeds()
	for _, name := range slices.Sorted(maps.Keys(seeds)) {
		f.Add(seeds[name])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		w := NewWriter(&out)
		r := NewReader(bytes.NewReader(data))
		var body []byte
		for {
			typ, b, err := r.Next(body)
			if err != nil {
				if len(b) != 0 {
					t.Fatalf("error %v with a body of %d bytes", err, len(b))
				}
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				switch {
				case err == io.EOF:
					if !bytes.Equal(out.Bytes(), data) {
						t.Fatalf("frames re-encode to %x, want %x", out.Bytes(), data)
					}
				case err == io.ErrUnexpectedEOF || errors.Is(err, ErrProtocol):
					if out.Len() >= len(data) || !bytes.HasPrefix(data, out.Bytes()) {
						t.Fatalf("frames re-encode to %x, not a proper prefix of %x", out.Bytes(), data)
					}
				default:
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			limit, ok := MaxBody(typ)
			if !ok || len(b) > limit {
				t.Fatalf("read a %v frame with a body of %d bytes", typ, len(b))
			}
			if cap(b) > max(bufSize, 2*len(data)) {
				t.Fatalf("body capacity %d for a stream of %d bytes", cap(b), len(data))
			}
			if err := w.WriteFrame(typ, b); err != nil {
				t.Fatal(err)
			}
			body = b
		}
	})
}

// FuzzDecode decodes a body (after its type byte) with the matching
// Decode function. Refusals must be protocol errors; what decodes must
// re-encode to the same bytes and decode again to the same message.
func FuzzDecode(f *testing.F) {
	seeds := decodeSeeds()
	for _, name := range slices.Sorted(maps.Keys(seeds)) {
		f.Add(seeds[name])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		typ, b := Type(data[0]), data[1:]
		decode, ok := decoders[typ]
		if !ok {
			return
		}
		m, err := decode(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("%v: error %v is not a protocol error", typ, err)
			}
			return
		}
		enc := m.Append(nil)
		if !bytes.Equal(enc, b) {
			t.Fatalf("%v: %x decodes to %+v, which encodes to %x", typ, b, m, enc)
		}
		again, err := decode(enc)
		if err != nil {
			t.Fatalf("%v: re-encoding does not decode: %v", typ, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("%v: decoded %+v, then %+v", typ, m, again)
		}
	})
}
