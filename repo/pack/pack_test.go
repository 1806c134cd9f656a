package pack

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/seal"
)

var writeFixture = flag.Bool("write-fixture", false, "create testdata/v1/pack if it is missing (never overwrites)")

func fixtureKey(t testing.TB) *seal.Key {
	k, err := seal.NewKey(bytes.Repeat([]byte{0x11}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fixtureID is the SHA-256 of testdata/v1/pack.
const fixtureID = "f9526bb018a82c6178a7c21643d45c010e00121054e57fdbc48d13e317c33a31"

// fixtureBlobs are the blobs of the frozen v1 pack, in order.
var fixtureBlobs = []struct {
	typ  blob.Type
	data string
}{
	{blob.Data, "hello, cairn"},
	{blob.Data, strings.Repeat("compressible text; ", 200)},
	{blob.Tree, "\x01\x00"},
	{blob.Data, ""},
}

type packed struct {
	data    []byte
	id      blob.ID
	entries []Entry
}

func buildPack(t testing.TB, key *seal.Key, blobs [][]byte, types []blob.Type) packed {
	t.Helper()
	w := NewWriter(nil, key)
	for i, b := range blobs {
		payload, c := Compress(nil, b, LevelDefault)
		if _, err := w.Add(blob.Handle{ID: blob.Hash(b), Type: types[i]}, c, payload, len(b)); err != nil {
			t.Fatal(err)
		}
	}
	id, size, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(w.Bytes())) || blob.Hash(w.Bytes()) != id {
		t.Fatalf("finish: size %d id %s for %d bytes", size, id.Short(), len(w.Bytes()))
	}
	return packed{data: w.Bytes(), id: id, entries: w.Entries()}
}

func fixtureInput() ([][]byte, []blob.Type) {
	var blobs [][]byte
	var types []blob.Type
	for _, b := range fixtureBlobs {
		blobs = append(blobs, []byte(b.data))
		types = append(types, b.typ)
	}
	return blobs, types
}

// TestFrozenV1 reads a pack written by the first version of the format.
// The fixture is never regenerated: old repositories stay readable.
func TestFrozenV1(t *testing.T) {
	path := filepath.Join("testdata", "v1", "pack")
	if _, err := os.Stat(path); os.IsNotExist(err) && *writeFixture {
		blobs, types := fixtureInput()
		p := buildPack(t, fixtureKey(t), blobs, types)
		if err := os.WriteFile(path, p.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("fixture: %v (create it once with -write-fixture)", err)
	}
	key := fixtureKey(t)
	entries, err := DecodeHeader(data, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(fixtureBlobs) {
		t.Fatalf("%d entries, want %d", len(entries), len(fixtureBlobs))
	}
	wantComp := []Compression{Raw, Zstd, Raw, Raw}
	for i, e := range entries {
		want := fixtureBlobs[i]
		if e.Type != want.typ || e.ID != blob.Hash([]byte(want.data)) || e.RawLength != uint32(len(want.data)) {
			t.Errorf("entry %d = %+v", i, e)
		}
		env := data[e.Offset : e.Offset+uint64(e.Length)]
		got, _, err := OpenBlob(nil, key, e.Handle, int(e.RawLength), env, nil)
		if err != nil || string(got) != want.data {
			t.Errorf("blob %d: %q, %v", i, got, err)
		}
		pt, err := key.Open(nil, env, func() []byte { a := envelopeAAD(e.Handle); return a[:] }())
		if err != nil || Compression(pt[0]) != wantComp[i] {
			t.Errorf("blob %d: compression %d, want %d (%v)", i, pt[0], wantComp[i], err)
		}
	}
	if got := blob.Hash(data).String(); got != fixtureID {
		t.Errorf("fixture hashes to %s, want %s: it must never change", got, fixtureID)
	}
}

func TestRoundTrip(t *testing.T) {
	key := fixtureKey(t)
	blobs, types := fixtureInput()
	p := buildPack(t, key, blobs, types)
	entries, err := DecodeHeader(p.data, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(p.entries) {
		t.Fatalf("entries %d, want %d", len(entries), len(p.entries))
	}
	for i := range entries {
		if entries[i] != p.entries[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, entries[i], p.entries[i])
		}
	}
}

// TestReset writes two packs with one Writer: the second holds only its
// own blobs, at offsets of its own, and reads back whole.
func TestReset(t *testing.T) {
	key := fixtureKey(t)
	blobs, types := fixtureInput()
	w := NewWriter(nil, key)
	for i, b := range blobs {
		payload, c := Compress(nil, b, LevelDefault)
		if _, err := w.Add(blob.Handle{ID: blob.Hash(b), Type: types[i]}, c, payload, len(b)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	w.Reset(nil, key)
	last := []byte("only in the second pack")
	h := blob.Handle{ID: blob.Hash(last), Type: blob.Data}
	if _, err := w.Add(h, Raw, last, len(last)); err != nil {
		t.Fatal(err)
	}
	id, size, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	second := w.Bytes()
	if size != int64(len(second)) || id != blob.Hash(second) {
		t.Fatalf("second pack: size %d id %s for %d bytes", size, id.Short(), len(second))
	}
	entries, err := DecodeHeader(second, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Handle != h || entries[0].Offset != PrefixSize {
		t.Fatalf("second pack entries %+v", entries)
	}
	got, _, err := OpenBlob(nil, key, h, len(last), second[PrefixSize:PrefixSize+int(entries[0].Length)], nil)
	if err != nil || string(got) != string(last) {
		t.Fatalf("second pack blob %q, %v", got, err)
	}
}

func TestEmptyPack(t *testing.T) {
	p := buildPack(t, fixtureKey(t), nil, nil)
	if len(p.data) != PrefixSize+seal.Overhead+FooterSize {
		t.Fatalf("empty pack is %d bytes", len(p.data))
	}
	entries, err := DecodeHeader(p.data, fixtureKey(t))
	if err != nil || len(entries) != 0 {
		t.Fatalf("entries %v, %v", entries, err)
	}
}

func TestHeaderDamage(t *testing.T) {
	key := fixtureKey(t)
	blobs, types := fixtureInput()
	p := buildPack(t, key, blobs, types)
	n := len(p.data)
	hdr := n - FooterSize - (seal.Overhead + EntrySize*len(blobs))
	wrongKey, _ := seal.NewKey(bytes.Repeat([]byte{0x22}, seal.KeySize))
	cases := []struct {
		name string
		data []byte
		key  *seal.Key
		want string
	}{
		{"truncated to nothing", p.data[:10], key, "pack: file of 10 bytes is too short to be a pack"},
		{"truncated tail", p.data[:n-1], key, "pack: offset " + itoa(n-1-FooterSize) + ": bad magic in footer"},
		{"flipped header byte", flip(p.data, hdr+20), key, "pack: offset " + itoa(hdr) + ": header checksum mismatch"},
		{"wrong key", p.data, wrongKey, "pack: offset " + itoa(hdr) + ": header does not authenticate (wrong key or damaged)"},
		{"bad prefix", flip(p.data, 0), key, "pack: offset 0: bad magic or version at the start"},
		{"huge count", setFooter(p.data, 4, 1<<24), key, "pack: offset " + itoa(n-FooterSize) + ": header claims 16777216 entries, more than the limit 1048576"},
		{"count mismatch", setFooter(p.data, 4, 3), key, "pack: offset " + itoa(n-FooterSize) + ": header length 224 does not fit 3 entries"},
		{"header larger than file", setFooter(setFooter(p.data, 4, 1000), 0, 1000*EntrySize+seal.Overhead), key, "pack: offset " + itoa(n-FooterSize) + ": header length 49028 exceeds the file"},
		{"version", setFooter(p.data, 12, 2), key, "pack: offset " + itoa(n-FooterSize) + ": unsupported version 2"},
	}
	for _, c := range cases {
		_, err := DecodeHeader(c.data, c.key)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: err = %v\nwant %s", c.name, err, c.want)
			continue
		}
		if !errors.Is(err, blob.ErrCorrupt) {
			t.Errorf("%s: not ErrCorrupt", c.name)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}

func setFooter(b []byte, field int, v uint32) []byte {
	c := bytes.Clone(b)
	f := c[len(c)-FooterSize:]
	f[field], f[field+1], f[field+2], f[field+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	return c
}

func TestBlobDamage(t *testing.T) {
	key := fixtureKey(t)
	blobs, types := fixtureInput()
	p := buildPack(t, key, blobs, types)
	e := p.entries[1]
	env := bytes.Clone(p.data[e.Offset : e.Offset+uint64(e.Length)])
	env[seal.NonceSize+3] ^= 1
	_, _, err := OpenBlob(nil, key, e.Handle, int(e.RawLength), env, nil)
	if !errors.Is(err, blob.ErrCorrupt) || !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("flipped: %v", err)
	}
	good := p.data[e.Offset : e.Offset+uint64(e.Length)]
	other := blob.Handle{ID: blob.Hash([]byte("x")), Type: blob.Data}
	if _, _, err := OpenBlob(nil, key, other, int(e.RawLength), good, nil); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("as another blob: %v", err)
	}
	if _, _, err := OpenBlob(nil, key, e.Handle, int(e.RawLength)+1, good, nil); err == nil ||
		!strings.Contains(err.Error(), "decompressed to 3800 bytes, want 3801") {
		t.Fatalf("wrong length: %v", err)
	}
}

// OpenBlobUnhashed authenticates, decompresses and checks the length as
// OpenBlob does, and only leaves out the comparison with the ID: an
// envelope sealed (with the key) under another blob's ID opens, a
// damaged one or a wrong length does not.
func TestOpenBlobUnhashed(t *testing.T) {
	key := fixtureKey(t)
	data := []byte(strings.Repeat("unhashed ", 500))
	payload, c := Compress(nil, data, LevelDefault)
	lie := blob.Handle{ID: blob.Hash([]byte("other")), Type: blob.Data}
	env := SealBlob(nil, key, lie, c, payload)
	if _, _, err := OpenBlob(nil, key, lie, len(data), env, nil); err == nil ||
		err.Error() != "blob data/"+lie.ID.Short()+": plaintext does not match its id: corrupt" {
		t.Fatalf("OpenBlob of a lie: %v", err)
	}
	got, _, err := OpenBlobUnhashed([]byte("kept"), key, lie, len(data), env, nil)
	if err != nil || string(got[:4]) != "kept" || !bytes.Equal(got[4:], data) {
		t.Fatalf("OpenBlobUnhashed: %v (%d bytes)", err, len(got))
	}
	if _, _, err := OpenBlobUnhashed(nil, key, lie, len(data), flip(env, seal.NonceSize+2), nil); !errors.Is(err, seal.ErrAuth) || !errors.Is(err, blob.ErrCorrupt) {
		t.Fatalf("flipped: %v", err)
	}
	if _, _, err := OpenBlobUnhashed(nil, key, lie, len(data)-1, env, nil); err == nil ||
		err.Error() != fmt.Sprintf("blob data/%s: decompressed to %d bytes, want %d: corrupt", lie.ID.Short(), len(data), len(data)-1) {
		t.Fatalf("wrong length: %v", err)
	}
}

func TestVerifyPayload(t *testing.T) {
	data := []byte(strings.Repeat("abc", 1000))
	payload, c := Compress(nil, data, LevelFastest)
	if c != Zstd {
		t.Fatalf("compression %d, want zstd", c)
	}
	h := blob.Handle{ID: blob.Hash(data), Type: blob.Data}
	got, err := VerifyPayload(nil, h, c, len(data), payload)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("verify: %v", err)
	}
	lie := blob.Handle{ID: blob.Hash([]byte("other")), Type: blob.Data}
	_, err = VerifyPayload(nil, lie, c, len(data), payload)
	if err == nil || err.Error() != "blob data/"+lie.ID.Short()+": plaintext does not match its id" {
		t.Fatalf("lie: %q", err)
	}
}

func TestCompressIncompressible(t *testing.T) {
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i*7919 ^ i>>3*31 ^ i>>11)
	}
	rnd := bytes.Clone(data)
	// A cheap deterministic scramble that zstd cannot shrink.
	x := uint64(1)
	for i := range rnd {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		rnd[i] = byte(x)
	}
	out, c := Compress([]byte("keep"), rnd, LevelDefault)
	if c != Raw || !bytes.Equal(out[4:], rnd) || string(out[:4]) != "keep" {
		t.Fatalf("random data: compression %d, %d bytes", c, len(out))
	}
}

func FuzzDecodeHeader(f *testing.F) {
	key := fixtureKey(f)
	blobs, types := fixtureInput()
	f.Add(buildPack(f, key, blobs, types).data)
	f.Add(buildPack(f, key, nil, nil).data)
	f.Add([]byte(Magic + "\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := DecodeHeader(data, key)
		if err != nil {
			if !errors.Is(err, blob.ErrCorrupt) {
				t.Fatalf("error is not ErrCorrupt: %v", err)
			}
			return
		}
		// A header that authenticates describes contiguous blobs.
		next := uint64(PrefixSize)
		for _, e := range entries {
			if e.Offset != next {
				t.Fatalf("entry at %d, want %d", e.Offset, next)
			}
			next += uint64(e.Length)
		}
	})
}

func FuzzOpenBlob(f *testing.F) {
	key := fixtureKey(f)
	blobs, types := fixtureInput()
	p := buildPack(f, key, blobs, types)
	for _, e := range p.entries {
		f.Add(p.data[e.Offset:e.Offset+uint64(e.Length)], uint8(e.Type), e.ID[:], int(e.RawLength))
	}
	f.Fuzz(func(t *testing.T, env []byte, typ uint8, id []byte, rawLen int) {
		if len(id) != blob.IDSize || rawLen > 1<<20 {
			return
		}
		h := blob.Handle{Type: blob.Type(typ), ID: blob.ID(id)}
		out, _, err := OpenBlob(nil, key, h, rawLen, env, nil)
		if err != nil {
			if !errors.Is(err, blob.ErrCorrupt) {
				t.Fatalf("error is not ErrCorrupt: %v", err)
			}
			return
		}
		if blob.Hash(out) != h.ID || len(out) != rawLen {
			t.Fatalf("opened a blob that does not match its handle")
		}
	})
}

func FuzzDecompress(f *testing.F) {
	payload, _ := Compress(nil, []byte(strings.Repeat("abc", 100)), LevelDefault)
	f.Add(payload, 300)
	f.Fuzz(func(t *testing.T, payload []byte, rawLen int) {
		if rawLen > 1<<20 {
			return
		}
		out, err := Decompress(nil, payload, Zstd, rawLen)
		if err == nil && len(out) != rawLen {
			t.Fatalf("decompressed %d bytes, want %d", len(out), rawLen)
		}
	})
}

func benchData(n int) []byte {
	b := make([]byte, n)
	x := uint64(42)
	for i := range b {
		x = x*6364136223846793005 + 1442695040888963407
		if i%4 == 0 {
			b[i] = byte(x >> 56)
		} else {
			b[i] = 'a' + byte(i%7)
		}
	}
	return b
}

// BenchmarkPackWrite measures compressing, sealing and packing 1 MiB
// chunks of half-compressible data into 16 MiB packs in memory.
func BenchmarkPackWrite(b *testing.B) {
	b.ReportAllocs()
	key := fixtureKey(b)
	data := benchData(1 << 20)
	b.SetBytes(int64(len(data)))
	var payload []byte
	i := 0
	w := NewWriter(make([]byte, 0, 20<<20), key)
	for b.Loop() {
		data[0] = byte(i)
		data[1] = byte(i >> 8)
		i++
		var c Compression
		payload, c = Compress(payload[:0], data, LevelDefault)
		if _, err := w.Add(blob.Handle{ID: blob.Hash(data), Type: blob.Data}, c, payload, len(data)); err != nil {
			b.Fatal(err)
		}
		if w.Size() >= 16<<20 {
			if _, _, err := w.Finish(); err != nil {
				b.Fatal(err)
			}
			w.Reset(w.Bytes(), key)
		}
	}
}

// BenchmarkSealBlob measures sealing an already compressed 1 MiB payload.
func BenchmarkSealBlob(b *testing.B) {
	key := fixtureKey(b)
	data := benchData(1 << 20)
	h := blob.Handle{ID: blob.Hash(data), Type: blob.Data}
	var dst []byte
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		dst = SealBlob(dst[:0], key, h, Raw, data)
	}
}

// BenchmarkOpenBlob measures opening, decompressing and re-hashing a
// 1 MiB blob.
func BenchmarkOpenBlob(b *testing.B) {
	key := fixtureKey(b)
	data := benchData(1 << 20)
	h := blob.Handle{ID: blob.Hash(data), Type: blob.Data}
	payload, c := Compress(nil, data, LevelDefault)
	env := SealBlob(nil, key, h, c, payload)
	var out, scratch []byte
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var err error
		out, scratch, err = OpenBlob(out[:0], key, h, len(data), env, scratch)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompress measures zstd at the default level on
// half-compressible data, on SQL-dump-like text (about 6 to 1) and on
// random data (stored raw after the attempt).
func BenchmarkCompress(b *testing.B) {
	x := uint64(1)
	next := func() uint64 { x = x*6364136223846793005 + 1442695040888963407; return x >> 33 }
	var text []byte
	for id := 100000; len(text) < 1<<20; id++ {
		text = fmt.Appendf(text, "INSERT INTO `states` VALUES (%d,'sensor.porch_%s','%d.%d','2021-10-20 07:%02d:%02d.%03d000',%d,%d);\n",
			id, [...]string{"energy", "pressure", "humidity", "temperature"}[next()%4], next()%100, next()%10, next()%60, next()%60, next()%1000, uint64(id)-next()%100, next()%100)
	}
	random := make([]byte, 1<<20)
	for i := range random {
		random[i] = byte(next())
	}
	for _, c := range []struct {
		name string
		data []byte
	}{{"half", benchData(1 << 20)}, {"sql", text[:1<<20]}, {"random", random}} {
		b.Run(c.name, func(b *testing.B) {
			var out []byte
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				out, _ = Compress(out[:0], c.data, LevelDefault)
			}
			b.ReportMetric(float64(len(out))/float64(len(c.data)), "ratio")
		})
		// Into no buffer, as after the collector emptied the payload
		// pool: the output is allocated once at its bound, not grown.
		b.Run(c.name+"/fresh", func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			b.ReportAllocs()
			for b.Loop() {
				Compress(nil, c.data, LevelDefault)
			}
		})
	}
}

// sourceFiles returns n deterministic source-like texts of 2-14 KiB, the
// size of most files in a source tree or a configuration directory.
func sourceFiles(n int) [][]byte {
	x := uint64(7)
	next := func() uint64 { x = x*6364136223846793005 + 1442695040888963407; return x >> 33 }
	words := []string{"config", "value", "server", "client", "handler", "request", "err", "ctx", "name", "path", "retry", "timeout", "buffer", "index", "state"}
	files := make([][]byte, n)
	for i := range files {
		size := 2<<10 + int(next()%(12<<10))
		var f []byte
		for len(f) < size {
			a, b, c := words[next()%uint64(len(words))], words[next()%uint64(len(words))], words[next()%uint64(len(words))]
			f = fmt.Appendf(f, "\tif %s, err := %s.%s(ctx, %d); err != nil {\n\t\treturn fmt.Errorf(\"%s %s: %%w\", err)\n\t}\n", a, b, c, next()%1000, c, a)
		}
		files[i] = f[:size]
	}
	return files
}

func TestCompressSmallBlobs(t *testing.T) {
	for _, f := range sourceFiles(8) {
		out, c := Compress(nil, f, LevelDefault)
		if c != Zstd {
			t.Fatalf("%d bytes of text stored raw", len(f))
		}
		if want := encoder(LevelFastest).EncodeAll(f, nil); !bytes.Equal(out, want) {
			t.Fatalf("%d-byte blob at the default level: %d bytes, not the fastest matcher's %d", len(f), len(out), len(want))
		}
		back, err := Decompress(nil, out, c, len(f))
		if err != nil || !bytes.Equal(back, f) {
			t.Fatalf("round trip of %d bytes: %v", len(f), err)
		}
	}
	var large []byte
	for _, f := range sourceFiles(16) {
		large = append(large, f...)
	}
	large = large[:smallBlob]
	out, _ := Compress(nil, large, LevelDefault)
	if want := encoder(LevelDefault).EncodeAll(large, nil); !bytes.Equal(out, want) {
		t.Fatalf("%d-byte blob: %d bytes, not the default matcher's %d", len(large), len(out), len(want))
	}
	if out, _ := Compress(nil, large[:100], LevelBetter); !bytes.Equal(out, encoder(LevelBetter).EncodeAll(large[:100], nil)) {
		t.Fatal("a small blob at the better level did not use the better matcher")
	}
}

// BenchmarkCompressSmall compresses 512 source-like files of 2-14 KiB one
// by one, with Compress (the fastest matcher for blobs this small) and
// with the default matcher, and reports the compressed share of the input.
// Alone, both tables stay in the CPU caches between calls; in a backup
// they do not, so the gap there is larger (see smallBlob).
func BenchmarkCompressSmall(b *testing.B) {
	files := sourceFiles(512)
	var total int
	for _, f := range files {
		total += len(f)
	}
	for _, c := range []struct {
		name     string
		compress func(dst, src []byte) []byte
	}{
		{"compress", func(dst, src []byte) []byte { out, _ := Compress(dst, src, LevelDefault); return out }},
		{"default-matcher", func(dst, src []byte) []byte { return encoder(LevelDefault).EncodeAll(src, dst) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(total))
			out := make([]byte, 0, 64<<10)
			var stored int
			for b.Loop() {
				stored = 0
				for _, f := range files {
					stored += len(c.compress(out[:0], f))
				}
			}
			b.ReportMetric(float64(stored)/float64(total), "ratio")
		})
	}
}
