package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cairnbackup/cairn/integration/s3test"
)

// s3Fixture is a bucket of its own on the test binary's shared SeaweedFS.
type s3Fixture struct {
	srv   *s3test.Server
	loc   S3Location
	creds S3Credentials
}

func newS3Fixture(t *testing.T) *s3Fixture {
	t.Helper()
	srv := s3test.Shared(t)
	return &s3Fixture{
		srv:   srv,
		loc:   S3Location{Endpoint: srv.Endpoint, Bucket: srv.NewBucket(t), Prefix: "repo"},
		creds: S3Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey},
	}
}

// open returns a backend on the fixture's bucket, through endpoint if
// it is not "" (a proxy).
func (f *s3Fixture) open(t *testing.T, endpoint string, opts S3Options) *S3 {
	t.Helper()
	loc := f.loc
	if endpoint != "" {
		loc.Endpoint = endpoint
	}
	s, err := NewS3(t.Context(), loc, f.creds, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// url names key as the backend's errors do, at endpoint.
func (f *s3Fixture) url(endpoint, key string) string {
	return "s3+http://" + endpoint + "/" + f.loc.Bucket + "/" + key
}

func testData(seed byte, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func hexName(b byte) string { return strings.Repeat(fmt.Sprintf("%02x", b), 32) }

func readAll(t *testing.T, s *S3, h Handle) []byte {
	t.Helper()
	got, err := ReadAll(t.Context(), s, h, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func listAll(t *testing.T, s *S3, k Kind) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	if err := s.List(t.Context(), k, func(name string, size int64) error {
		got[name] = size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// requestsSince describes the requests a proxy received from request
// from on: method and query, without the values of uploadId.
func requestsSince(p *s3test.Proxy, from int) []string {
	var out []string
	for _, r := range p.Requests()[from:] {
		q, _ := url.ParseQuery(r.Query)
		var keys []string
		for k, v := range q {
			if k == "uploadId" || v[0] == "" {
				keys = append(keys, k)
			} else {
				keys = append(keys, k+"="+v[0])
			}
		}
		slices.Sort(keys)
		desc := []string{r.Method}
		if len(keys) > 0 {
			desc = append(desc, strings.Join(keys, "&"))
		}
		if r.Range != "" {
			desc = append(desc, r.Range)
		}
		out = append(out, strings.Join(desc, " "))
	}
	// Parts go up concurrently: sort each run of them.
	for i := 0; i < len(out); {
		j := i
		for j < len(out) && strings.HasPrefix(out[j], "PUT partNumber=") {
			j++
		}
		slices.Sort(out[i:j])
		i = max(j, i+1)
	}
	return out
}

// faultFrom gives fault to the n requests from request number from on
// (n < 0: all of them) that match, and passes the rest.
func faultFrom(p *s3test.Proxy, n int, fault s3test.Fault, match func(s3test.Request) bool) {
	from := len(p.Requests())
	count := 0
	p.SetRule(func(r s3test.Request) s3test.Fault {
		if r.N <= from || (match != nil && !match(r)) || (n >= 0 && count >= n) {
			return s3test.Pass
		}
		count++
		return fault
	})
}

func isPart(n int) func(s3test.Request) bool {
	return func(r s3test.Request) bool {
		q, _ := url.ParseQuery(r.Query)
		return r.Method == "PUT" && q.Get("partNumber") == fmt.Sprint(n)
	}
}

func isMethod(m string) func(s3test.Request) bool {
	return func(r s3test.Request) bool { return r.Method == m }
}

// fastRetries keeps fault tests short: tiny waits between attempts.
var fastRetries = S3Options{Attempts: 4, RetryDelay: time.Millisecond, MaxRetryDelay: 2 * time.Millisecond}

func TestS3EveryKind(t *testing.T) {
	f := newS3Fixture(t)
	s := f.open(t, "", S3Options{})
	ctx := t.Context()
	objects := map[Handle][]byte{
		{Kind: Config}:                     testData(1, 100),
		{Kind: Keys, Name: "k1"}:           testData(2, 200),
		{Kind: Packs, Name: hexName(0xab)}: testData(3, 3000),
		{Kind: Packs, Name: hexName(0xcd)}: {},
		{Kind: Snapshot, Name: hexName(1)}: testData(5, 500),
		{Kind: Drills, Name: hexName(2)}:   testData(6, 50),
	}
	for h, data := range objects {
		if err := s.Put(ctx, h, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}

	var keys []string
	for obj := range f.srv.Client(t).ListObjects(ctx, f.loc.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	want := []string{"repo/config", "repo/drills/" + hexName(2), "repo/keys/k1",
		"repo/packs/ab/" + hexName(0xab), "repo/packs/cd/" + hexName(0xcd), "repo/snapshots/" + hexName(1)}
	if !slices.Equal(keys, want) {
		t.Errorf("keys in the bucket:\n%q\nwant\n%q", keys, want)
	}

	for h, data := range objects {
		if got := readAll(t, s, h); !bytes.Equal(got, data) {
			t.Errorf("%s: read %d bytes, want the %d put", h, len(got), len(data))
		}
	}

	pack := Handle{Kind: Packs, Name: hexName(0xab)}
	file, err := s.Open(ctx, pack)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if file.Size() != 3000 {
		t.Errorf("size %d, want 3000", file.Size())
	}
	for _, c := range []struct {
		off, len, n int
		err         error
	}{
		{1000, 100, 100, nil},
		{2950, 100, 50, io.EOF},
		{0, 3000, 3000, nil},
		{3000, 10, 0, io.EOF},
		{5000, 10, 0, io.EOF},
	} {
		p := make([]byte, c.len)
		n, err := file.ReadAt(p, int64(c.off))
		if n != c.n || err != c.err || !bytes.Equal(p[:n], objects[pack][min(c.off, 3000):min(c.off, 3000)+n]) {
			t.Errorf("ReadAt(%d bytes, %d) = %d, %v; want %d, %v and the object's bytes", c.len, c.off, n, err, c.n, c.err)
		}
	}

	// Objects that do not fit the layout are not listed.
	for _, k := range []string{"repo/packs/zz/" + hexName(0xab), "repo/packs/ab", "repo/snapshots/a/b", "repo/keys/.tmp-x", "other/keys/k2"} {
		if _, err := f.srv.Client(t).PutObject(ctx, f.loc.Bucket, k, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wantLists := map[Kind]map[string]int64{
		Config:   {"config": 100},
		Keys:     {"k1": 200},
		Packs:    {hexName(0xab): 3000, hexName(0xcd): 0},
		Snapshot: {hexName(1): 500},
		Drills:   {hexName(2): 50},
	}
	for k, want := range wantLists {
		if got := listAll(t, s, k); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("list %s: %v, want %v", k, got, want)
		}
	}

	for h := range objects {
		if err := s.Delete(ctx, h); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, h); err != nil {
			t.Errorf("deleting %s again: %v", h, err)
		}
	}
	for k := range wantLists {
		if got := listAll(t, s, k); len(got) != 0 {
			t.Errorf("list %s after deleting everything: %v", k, got)
		}
	}
	snap := Handle{Kind: Snapshot, Name: hexName(1)}
	_, err = s.Open(ctx, snap)
	wantMsg := "storage: open " + f.url(f.loc.Endpoint, "repo/snapshots/"+hexName(1)) + ": object does not exist"
	if !errors.Is(err, ErrNotExist) || err.Error() != wantMsg {
		t.Errorf("open of a deleted object: %v\nwant %s", err, wantMsg)
	}
}

// A second Put of a name never replaces the object, whatever its size:
// for packs the store refuses the conditional PUT or
// CompleteMultipartUpload (If-None-Match: *); for other kinds the backend
// asks first.
func TestS3PutNeverReplaces(t *testing.T) {
	f := newS3Fixture(t)
	p := s3test.NewProxy(t, f.srv.Endpoint)
	s := f.open(t, p.Endpoint, S3Options{})
	for _, c := range []struct {
		name     string
		h        Handle
		size     int
		requests []string // of the second Put
	}{
		{"snapshot", Handle{Kind: Snapshot, Name: hexName(1)}, 500, []string{"HEAD"}},
		{"pack", Handle{Kind: Packs, Name: hexName(2)}, 3000, []string{"PUT"}},
		{"multipart pack", Handle{Kind: Packs, Name: hexName(3)}, 17<<20 + 123, []string{
			"POST uploads", "PUT partNumber=1&uploadId", "PUT partNumber=2&uploadId", "PUT partNumber=3&uploadId",
			"POST uploadId", "DELETE uploadId"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			first, second := testData(1, c.size), testData(2, c.size)
			if err := s.Put(t.Context(), c.h, bytes.NewReader(first)); err != nil {
				t.Fatal(err)
			}
			from := len(p.Requests())
			err := s.Put(t.Context(), c.h, bytes.NewReader(second))
			want := "storage: put " + f.url(p.Endpoint, s.Key(c.h)) + ": object exists already"
			if !errors.Is(err, ErrExist) || err.Error() != want {
				t.Errorf("second put: %v\nwant %s", err, want)
			}
			if got := requestsSince(p, from); !slices.Equal(got, c.requests) {
				t.Errorf("requests of the second put: %q, want %q", got, c.requests)
			}
			if got := readAll(t, s, c.h); !bytes.Equal(got, first) {
				t.Errorf("the object changed: %d bytes, equal to the first put: %v", len(got), bytes.Equal(got, first))
			}
		})
	}
	if left, err := s.CleanUploads(t.Context(), 0); err != nil || len(left) != 0 {
		t.Errorf("incomplete uploads left: %q, %v", left, err)
	}
}

// A pack larger than a part goes up as a multipart upload, and reads
// back whole and across part boundaries.
func TestS3Multipart(t *testing.T) {
	f := newS3Fixture(t)
	p := s3test.NewProxy(t, f.srv.Endpoint)
	s := f.open(t, p.Endpoint, S3Options{})
	h := Handle{Kind: Packs, Name: hexName(7)}
	data := testData(7, 17<<20+4097) // 8 MiB + 8 MiB + 4097 bytes
	from := len(p.Requests())
	if err := s.Put(t.Context(), h, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got := requestsSince(p, from)
	want := []string{"POST uploads", "PUT partNumber=1&uploadId", "PUT partNumber=2&uploadId", "PUT partNumber=3&uploadId", "POST uploadId"}
	if !slices.Equal(got, want) {
		t.Errorf("requests: %q, want %q", got, want)
	}
	file, err := s.Open(t.Context(), h)
	if err != nil {
		t.Fatal(err)
	}
	if file.Size() != int64(len(data)) {
		t.Fatalf("size %d, want %d", file.Size(), len(data))
	}
	buf := make([]byte, 20)
	if n, err := file.ReadAt(buf, 8<<20-10); n != 20 || err != nil || !bytes.Equal(buf, data[8<<20-10:8<<20+10]) {
		t.Errorf("read across the first part boundary: %d, %v", n, err)
	}
	if got := readAll(t, s, h); !bytes.Equal(got, data) {
		t.Errorf("read back %d bytes, not the %d put", len(got), len(data))
	}

	// A reader that is not a bytes.Reader goes up the same way.
	h2 := Handle{Kind: Packs, Name: hexName(8)}
	if err := s.Put(t.Context(), h2, io.MultiReader(bytes.NewReader(data[:100]), bytes.NewReader(data[100:]))); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, h2); !bytes.Equal(got, data) {
		t.Errorf("streamed: read back %d bytes, not the %d put", len(got), len(data))
	}
}

// Packs go up guarded by a CRC-32C, other objects by a Content-MD5
// (their ETag, by which a write sent again recognises its own object);
// the store checks either (a damaged body is sent again:
// TestS3PutStallsAndDrops).
func TestS3BodySums(t *testing.T) {
	f := newS3Fixture(t)
	p := s3test.NewProxy(t, f.srv.Endpoint)
	s := f.open(t, p.Endpoint, S3Options{})
	type sent struct{ req, sums string }
	for _, c := range []struct {
		h    Handle
		size int
		want []sent
	}{
		{Handle{Kind: Packs, Name: hexName(1)}, 1000, []sent{{"PUT", "CRC32C"}}},
		{Handle{Kind: Packs, Name: hexName(2)}, 9 << 20, []sent{{"POST uploads", ""},
			{"PUT partNumber=1&uploadId", "CRC32C"}, {"PUT partNumber=2&uploadId", "CRC32C"}, {"POST uploadId", ""}}},
		{Handle{Kind: Snapshot, Name: hexName(3)}, 1000, []sent{{"HEAD", ""}, {"PUT", "Content-MD5"}}},
		{Handle{Kind: Snapshot, Name: hexName(4)}, 9 << 20, []sent{{"HEAD", ""}, {"POST uploads", ""},
			{"PUT partNumber=1&uploadId", "Content-MD5"}, {"PUT partNumber=2&uploadId", "Content-MD5"}, {"POST uploadId", ""}}},
	} {
		from := len(p.Requests())
		data := testData(byte(c.size), c.size)
		if err := s.Put(t.Context(), c.h, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		var got []sent
		for i, r := range requestsSince(p, from) {
			got = append(got, sent{r, p.Requests()[from+i].Sums})
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s of %d bytes: %q, want %q", c.h, c.size, got, c.want)
		}
		if got := readAll(t, s, c.h); !bytes.Equal(got, data) {
			t.Errorf("%s: read back %d bytes, not the %d put", c.h, len(got), len(data))
		}
	}
}

func TestS3Replace(t *testing.T) {
	f := newS3Fixture(t)
	s := f.open(t, "", S3Options{})
	h := Handle{Kind: Snapshot, Name: hexName(1)}
	if err := s.Put(t.Context(), h, bytes.NewReader(testData(1, 100))); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(t.Context(), h, bytes.NewReader(testData(2, 90))); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, h); !bytes.Equal(got, testData(2, 90)) {
		t.Errorf("after Replace: %d bytes, not the replacement", len(got))
	}
}

func TestS3WrongCredentials(t *testing.T) {
	f := newS3Fixture(t)
	wrongSecret := "wrong" + f.creds.SecretAccessKey[5:]
	const signature = "access denied, check the access key and secret: The request signature we calculated does not match the signature you provided. Check your key and signing method. (HTTP 403 SignatureDoesNotMatch)"
	const unknownKey = "access denied, check the access key and secret: The access key ID you provided does not exist in our records. (HTTP 403 InvalidAccessKeyId)"
	for _, c := range []struct {
		name   string
		creds  S3Credentials
		open   string // NewS3's error
		putMsg string // Put's error, after the object URL
	}{
		{"wrong secret", S3Credentials{AccessKeyID: f.creds.AccessKeyID, SecretAccessKey: wrongSecret}, signature, signature},
		{"unknown access key", S3Credentials{AccessKeyID: "AKIANOSUCHKEY", SecretAccessKey: wrongSecret}, unknownKey, unknownKey},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewS3(t.Context(), f.loc, c.creds, fastRetries)
			want := "storage: open s3+http://" + f.loc.Endpoint + "/" + f.loc.Bucket + ": " + c.open
			if err == nil || err.Error() != want {
				t.Errorf("NewS3: %v\nwant %s", err, want)
			}
			s, err := newS3(f.loc, c.creds, fastRetries)
			if err != nil {
				t.Fatal(err)
			}
			h := Handle{Kind: Packs, Name: hexName(1)}
			err = s.Put(t.Context(), h, bytes.NewReader(testData(1, 100)))
			want = "storage: put " + f.url(f.loc.Endpoint, s.Key(h)) + ": " + c.putMsg
			if err == nil || err.Error() != want {
				t.Errorf("Put: %v\nwant %s", err, want)
			}
			if err != nil && strings.Contains(err.Error(), wrongSecret) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}

func TestS3MissingBucket(t *testing.T) {
	f := newS3Fixture(t)
	loc := f.loc
	loc.Bucket = "no-such-bucket"
	_, err := NewS3(t.Context(), loc, f.creds, fastRetries)
	want := `storage: open s3+http://` + loc.Endpoint + `/no-such-bucket: bucket "no-such-bucket" does not exist`
	if err == nil || err.Error() != want {
		t.Errorf("NewS3: %v\nwant %s", err, want)
	}
}

// 500s are retried, up to the bound; a Put that gives up leaves no object.
func TestS3Retries500(t *testing.T) {
	f := newS3Fixture(t)
	p := s3test.NewProxy(t, f.srv.Endpoint)
	s := f.open(t, p.Endpoint, fastRetries)
	direct := f.open(t, "", S3Options{})
	h := Handle{Kind: Packs, Name: hexName(1)}
	data := testData(1, 1000)

	from := len(p.Requests())
	faultFrom(p, 3, s3test.Fail500, nil)
	if err := s.Put(t.Context(), h, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if got, want := requestsSince(p, from), []string{"PUT", "PUT", "PUT", "PUT"}; !slices.Equal(got, want) {
		t.Errorf("requests: %q, want %q", got, want)
	}
	// A backend that has not seen the object asks for its size first;
	// one that stored it knows.
	for _, c := range []struct {
		s    *S3
		want []string
	}{
		{f.open(t, p.Endpoint, fastRetries), []string{"HEAD", "HEAD", "HEAD", "HEAD", "GET bytes=0-999"}},
		{s, []string{"GET bytes=0-999", "GET bytes=0-999", "GET bytes=0-999", "GET bytes=0-999"}},
	} {
		from = len(p.Requests())
		faultFrom(p, 3, s3test.Fail500, nil)
		if got := readAll(t, c.s, h); !bytes.Equal(got, data) {
			t.Errorf("read back %d bytes", len(got))
		}
		if got := requestsSince(p, from); !slices.Equal(got, c.want) {
			t.Errorf("requests: %q, want %q", got, c.want)
		}
	}

	h2 := Handle{Kind: Packs, Name: hexName(2)}
	faultFrom(p, -1, s3test.Fail500, nil)
	err := s.Put(t.Context(), h2, bytes.NewReader(data))
	want := "storage: put " + f.url(p.Endpoint, s.Key(h2)) + ": fault injected by s3test.Proxy (HTTP 500 InternalError) (gave up after 4 attempts)"
	if err == nil || err.Error() != want {
		t.Errorf("put: %v\nwant %s", err, want)
	}
	if _, err := direct.Open(t.Context(), h2); !errors.Is(err, ErrNotExist) {
		t.Errorf("after a failed put: %v, want ErrNotExist", err)
	}
}

// A response that breaks off mid-body, or stalls there, is resumed from
// the byte where it stopped.
func TestS3ReadResumes(t *testing.T) {
	t.Parallel() // its stalls wait out the 2s timeout on the real clock (a bucket and a proxy of its own)
	f := newS3Fixture(t)
	p := s3test.NewProxy(t, f.srv.Endpoint)
	s := f.open(t, p.Endpoint, S3Options{Attempts: 2, RetryDelay: time.Millisecond, Timeout: 2 * time.Second})
	h := Handle{Kind: Packs, Name: hexName(1)}
	data := testData(1, 1<<20)
	if err := s.Put(t.Context(), h, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	file, err := s.Open(t.Context(), h)
	if err != nil {
		t.Fatal(err)
	}
	for _, fault := range []s3test.Fault{s3test.DropResponse, s3test.StallResponse} {
		t.Run(fault.String(), func(t *testing.T) {
			from := len(p.Requests())
			faultFrom(p, 1, fault, isMethod("GET"))
			buf := make([]byte, 600000)
			n, err := file.ReadAt(buf, 1000)
			if n != len(buf) || err != nil || !bytes.Equal(buf, data[1000:601000]) {
				t.Errorf("ReadAt: %d, %v", n, err)
			}
			if got, want := requestsSince(p, from), []string{"GET bytes=1000-600999", "GET bytes=301000-600999"}; !slices.Equal(got, want) {
				t.Errorf("requests: %q, want %q", got, want)
			}
		})
	}
	t.Run("stalled every time", func(t *testing.T) {
		faultFrom(p, -1, s3test.StallResponse, isMethod("GET"))
		buf := make([]byte, 600000)
		_, err := file.ReadAt(buf, 1000)
		want := "storage: read 600000 bytes at 1000 of " + f.url(p.Endpoint, s.Key(h)) + ": no data moved for 2s (gave up after 2 attempts)"
		if err == nil || err.Error() != want {
			t.Errorf("ReadAt: %v\nwant %s", err, want)
		}
	})
}

// A PUT whose answer never comes, whose connection drops mid-body, or
// whose body is damaged on the way, is sent again.
func TestS3PutStallsAndDrops(t *testing.T) {
	t.Parallel() // its stall waits out the 2s timeout on the real clock (a bucket and a proxy of its own)
	f := newS3Fixture(t)
	p := s3test.NewProxy(t, f.srv.Endpoint)
	s := f.open(t, p.Endpoint, S3Options{Attempts: 3, RetryDelay: time.Millisecond, Timeout: 2 * time.Second})
	for i, c := range []struct {
		fault s3test.Fault
		size  int
		match func(s3test.Request) bool
		want  []string
	}{
		{s3test.Stall, 1000, isMethod("PUT"), []string{"PUT", "PUT"}},
		{s3test.DropRequest, 1000, isMethod("PUT"), []string{"PUT", "PUT"}},
		{s3test.DropRequest, 17 << 20, isPart(2), []string{"POST uploads", "PUT partNumber=1&uploadId",
			"PUT partNumber=2&uploadId", "PUT partNumber=2&uploadId", "PUT partNumber=3&uploadId", "POST uploadId"}},
		// The store refuses a body that does not match its Content-MD5.
		{s3test.CorruptRequest, 1000, isMethod("PUT"), []string{"PUT", "PUT"}},
		{s3test.CorruptRequest, 17 << 20, isPart(3), []string{"POST uploads", "PUT partNumber=1&uploadId",
			"PUT partNumber=2&uploadId", "PUT partNumber=3&uploadId", "PUT partNumber=3&uploadId", "POST uploadId"}},
	} {
		t.Run(fmt.Sprintf("%s %d", c.fault, c.size), func(t *testing.T) {
			h := Handle{Kind: Packs, Name: hexName(byte(i))}
			data := testData(byte(i), c.size)
			from := len(p.Requests())
			faultFrom(p, 1, c.fault, c.match)
			if err := s.Put(t.Context(), h, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if got := requestsSince(p, from); !slices.Equal(got, c.want) {
				t.Errorf("requests: %q, want %q", got, c.want)
			}
			if got := readAll(t, s, h); !bytes.Equal(got, data) {
				t.Errorf("read back %d bytes, not the %d put", len(got), len(data))
			}
		})
	}
}

// A multipart upload that fails, or whose context is cancelled, is
// aborted: no object, no incomplete upload.
func TestS3FailedMultipartAborted(t *testing.T) {
	f := newS3Fixture(t)
	p := s3test.NewProxy(t, f.srv.Endpoint)
	opts := fastRetries
	opts.Attempts, opts.PartConcurrency = 3, 1
	s := f.open(t, p.Endpoint, opts)
	direct := f.open(t, "", S3Options{})
	data := testData(1, 17<<20)

	h := Handle{Kind: Packs, Name: hexName(1)}
	from := len(p.Requests())
	faultFrom(p, -1, s3test.Fail500, isPart(2))
	err := s.Put(t.Context(), h, bytes.NewReader(data))
	want := "storage: put " + f.url(p.Endpoint, s.Key(h)) + ": part 2: fault injected by s3test.Proxy (HTTP 500 InternalError) (gave up after 3 attempts)"
	if err == nil || err.Error() != want {
		t.Errorf("put: %v\nwant %s", err, want)
	}
	wantReqs := []string{"POST uploads", "PUT partNumber=1&uploadId", "PUT partNumber=2&uploadId", "PUT partNumber=2&uploadId", "PUT partNumber=2&uploadId", "DELETE uploadId"}
	if got := requestsSince(p, from); !slices.Equal(got, wantReqs) {
		t.Errorf("requests: %q, want %q", got, wantReqs)
	}

	h2 := Handle{Kind: Packs, Name: hexName(2)}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	from = len(p.Requests())
	faultFrom(p, -1, s3test.Stall, isPart(2))
	p.OnRequest(func(r s3test.Request) {
		if isPart(2)(r) {
			cancel()
		}
	})
	err = s.Put(ctx, h2, bytes.NewReader(data))
	p.OnRequest(nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("put with its context cancelled: %v", err)
	}
	wantReqs = []string{"POST uploads", "PUT partNumber=1&uploadId", "PUT partNumber=2&uploadId", "DELETE uploadId"}
	if got := requestsSince(p, from); !slices.Equal(got, wantReqs) {
		t.Errorf("requests: %q, want %q", got, wantReqs)
	}

	for _, h := range []Handle{h, h2} {
		if _, err := direct.Open(t.Context(), h); !errors.Is(err, ErrNotExist) {
			t.Errorf("%s after a failed put: %v, want ErrNotExist", h, err)
		}
	}
	if left, err := direct.CleanUploads(t.Context(), 0); err != nil || len(left) != 0 {
		t.Errorf("incomplete uploads left: %q, %v", left, err)
	}
}

const s3ChildEnv = "STORAGE_TEST_S3_CHILD"

type s3ChildConfig struct {
	Location    S3Location
	Credentials S3Credentials
	Name        string
	Size        int
}

// s3Child puts one multipart pack, one part at a time, for
// TestS3KilledMidUpload; the crash point kills it part-way.
func s3Child() int {
	var c s3ChildConfig
	if err := json.Unmarshal([]byte(os.Getenv(s3ChildEnv)), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	s, err := NewS3(ctx, c.Location, c.Credentials, S3Options{PartConcurrency: 1})
	if err == nil {
		err = s.Put(ctx, Handle{Kind: Packs, Name: c.Name}, bytes.NewReader(testData(1, c.Size)))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// A process killed between the parts of a multipart upload leaves no
// object, only an incomplete upload that CleanUploads aborts; the next
// Put stores the object.
func TestS3KilledMidUpload(t *testing.T) {
	f := newS3Fixture(t)
	s := f.open(t, "", S3Options{})
	h := Handle{Kind: Packs, Name: hexName(1)}
	cfg, _ := json.Marshal(s3ChildConfig{Location: f.loc, Credentials: f.creds, Name: h.Name, Size: 17 << 20})
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), s3ChildEnv+"="+string(cfg), "CAIRN_CRASHPOINT=s3-part-stored:1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() {
		t.Fatalf("child not killed: %v\n%s", err, out)
	}
	if _, err := s.Open(t.Context(), h); !errors.Is(err, ErrNotExist) {
		t.Errorf("after the kill: %v, want ErrNotExist", err)
	}
	if got := listAll(t, s, Packs); len(got) != 0 {
		t.Errorf("packs listed after the kill: %v", got)
	}
	if left, err := s.CleanUploads(t.Context(), time.Hour); err != nil || len(left) != 0 {
		t.Errorf("CleanUploads of uploads older than an hour: %q, %v; want none", left, err)
	}
	if left, err := s.CleanUploads(t.Context(), 0); err != nil || !slices.Equal(left, []string{s.Key(h)}) {
		t.Errorf("CleanUploads: %q, %v; want [%s]", left, err, s.Key(h))
	}
	if left, err := s.CleanUploads(t.Context(), 0); err != nil || len(left) != 0 {
		t.Errorf("CleanUploads again: %q, %v; want none", left, err)
	}
	if err := s.Put(t.Context(), h, bytes.NewReader(testData(1, 17<<20))); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, h); !bytes.Equal(got, testData(1, 17<<20)) {
		t.Errorf("read back %d bytes", len(got))
	}
}

// A Put whose answer is lost is sent again and refused (the object
// exists: its own); the ETag shows it is its own, so the Put succeeds.
// An object of other bytes is still refused.
func TestS3LostAnswer(t *testing.T) {
	f := newS3Fixture(t)
	p := s3test.NewProxy(t, f.srv.Endpoint)
	s := f.open(t, p.Endpoint, fastRetries)
	isComplete := func(r s3test.Request) bool {
		q, _ := url.ParseQuery(r.Query)
		return r.Method == "POST" && q.Has("uploadId")
	}
	for i, c := range []struct {
		name  string
		h     Handle
		size  int
		match func(s3test.Request) bool
		want  []string
		other []string // of a Put of other bytes
	}{
		{"pack", Handle{Kind: Packs, Name: hexName(1)}, 1000, isMethod("PUT"), []string{"PUT", "PUT", "HEAD"}, []string{"PUT", "PUT", "HEAD"}},
		{"snapshot", Handle{Kind: Snapshot, Name: hexName(2)}, 1000, isMethod("PUT"), []string{"HEAD", "PUT", "PUT", "HEAD"}, []string{"HEAD"}},
		{"multipart pack", Handle{Kind: Packs, Name: hexName(3)}, 17 << 20, isComplete, []string{"POST uploads",
			"PUT partNumber=1&uploadId", "PUT partNumber=2&uploadId", "PUT partNumber=3&uploadId", "POST uploadId", "POST uploadId", "HEAD"},
			[]string{"POST uploads", "PUT partNumber=1&uploadId", "PUT partNumber=2&uploadId", "PUT partNumber=3&uploadId",
				"POST uploadId", "POST uploadId", "HEAD", "DELETE uploadId"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := testData(byte(i), c.size)
			from := len(p.Requests())
			faultFrom(p, 1, s3test.LoseResponse, c.match)
			if err := s.Put(t.Context(), c.h, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if got := requestsSince(p, from); !slices.Equal(got, c.want) {
				t.Errorf("requests: %q, want %q", got, c.want)
			}
			if got := readAll(t, s, c.h); !bytes.Equal(got, data) {
				t.Errorf("read back %d bytes, not the %d put", len(got), len(data))
			}

			// Other bytes, refused on the second attempt: not its own.
			from = len(p.Requests())
			faultFrom(p, 1, s3test.Fail500, c.match)
			err := s.Put(t.Context(), c.h, bytes.NewReader(testData(100, c.size)))
			want := "storage: put " + f.url(p.Endpoint, s.Key(c.h)) + ": object exists already"
			if !errors.Is(err, ErrExist) || err.Error() != want {
				t.Errorf("put of other bytes: %v\nwant %s", err, want)
			}
			if got := requestsSince(p, from); !slices.Equal(got, c.other) {
				t.Errorf("requests of the put of other bytes: %q, want %q", got, c.other)
			}
			if got := readAll(t, s, c.h); !bytes.Equal(got, data) {
				t.Errorf("the object changed")
			}
		})
	}
	if left, err := s.CleanUploads(t.Context(), 0); err != nil || len(left) != 0 {
		t.Errorf("incomplete uploads left: %q, %v", left, err)
	}
}

// Whatever fails, no error shows the secret key or the session token.
func TestS3ErrorsHideSecrets(t *testing.T) {
	f := newS3Fixture(t)
	p := s3test.NewProxy(t, f.srv.Endpoint)
	const token = "SESSIONTOKENdoNotShow0123456789"
	wrong := S3Credentials{AccessKeyID: f.creds.AccessKeyID, SecretAccessKey: "Wrong/Secret+doNotShow0123456789", SessionToken: token}
	var errs []error
	_, err := NewS3(t.Context(), f.loc, S3Credentials{AccessKeyID: f.creds.AccessKeyID, SecretAccessKey: f.creds.SecretAccessKey, SessionToken: token}, fastRetries)
	errs = append(errs, err)
	_, err = NewS3(t.Context(), f.loc, wrong, fastRetries)
	errs = append(errs, err)
	w, err := newS3(S3Location{Endpoint: p.Endpoint, Bucket: f.loc.Bucket}, wrong, fastRetries)
	if err != nil {
		t.Fatal(err)
	}
	h := Handle{Kind: Packs, Name: hexName(1)}
	errs = append(errs, w.Put(t.Context(), h, bytes.NewReader(testData(1, 100))))
	_, err = w.Open(t.Context(), h)
	errs = append(errs, err)

	s := f.open(t, p.Endpoint, fastRetries)
	s.secrets = append(s.secrets, token) // as if the session token were set
	faultFrom(p, -1, s3test.Fail500, nil)
	errs = append(errs, s.Put(t.Context(), h, bytes.NewReader(testData(1, 100))))
	errs = append(errs, s.Put(t.Context(), h, bytes.NewReader(testData(1, 17<<20))))
	errs = append(errs, s.List(t.Context(), Packs, func(string, int64) error { return nil }))
	errs = append(errs, s.Delete(t.Context(), h))
	_, err = s.CleanUploads(t.Context(), 0)
	errs = append(errs, err)
	for i, err := range errs {
		if i == 0 && err == nil {
			continue // the store may ignore a session token
		}
		if err == nil {
			t.Errorf("error %d: nil", i)
			continue
		}
		for _, secret := range []string{f.creds.SecretAccessKey, wrong.SecretAccessKey, token} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %d shows a secret: %v", i, err)
			}
		}
		t.Logf("error %d: %v", i, err)
	}
}
