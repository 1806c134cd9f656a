package s3test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// A server keeps its objects across a kill and a restart on the same
// ports; a stopped server leaves no process and no socket behind; a
// wrong secret is refused.
func TestServerLifecycle(t *testing.T) {
	s := Start(t)
	ctx := t.Context()
	bucket := s.NewBucket(t)
	if _, err := s.Client(t).PutObject(ctx, bucket, "k", strings.NewReader("hello"), 5, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	wrong, err := minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, "wrong"+s.SecretKey, ""), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = wrong.StatObject(ctx, bucket, "k", minio.StatObjectOptions{})
	if code := minio.ToErrorResponse(err).Code; code != "SignatureDoesNotMatch" && code != "AccessDenied" {
		t.Errorf("a wrong secret: %v (code %q)", err, code)
	}

	s.mu.Lock()
	pid := s.p.cmd.Process.Pid
	s.mu.Unlock()
	s.Kill()
	s.Restart(t)
	obj, err := s.Client(t).GetObject(ctx, bucket, "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(obj); err != nil || string(got) != "hello" {
		t.Errorf("after a restart: %q, %v", got, err)
	}
	if d, ok := s.CPUTime(); runtime.GOOS == "linux" && (!ok || d <= 0) {
		t.Errorf("CPUTime of a running weed on Linux: %v, %v", d, ok)
	}
	s.Stop()
	if d, ok := s.CPUTime(); ok {
		t.Errorf("CPUTime of a stopped weed: %v, %v", d, ok)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed weed %d is still there: %v", pid, err)
	}
	for _, path := range s.sockets {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s left behind: %v", path, err)
		}
	}
}

// The proxy forwards signed requests unchanged and carries out its
// faults.
func TestProxy(t *testing.T) {
	s := Start(t)
	bucket := s.NewBucket(t)
	p := NewProxy(t, s.Endpoint)
	c, err := minio.New(p.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	if _, err := c.PutObject(ctx, bucket, "k", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	get := func(ctx context.Context) ([]byte, error) {
		obj, err := c.GetObject(ctx, bucket, "k", minio.GetObjectOptions{})
		if err != nil {
			return nil, err
		}
		defer obj.Close()
		return io.ReadAll(obj)
	}

	p.SetRule(FirstN(len(p.Requests())+1, Fail500))
	if _, err := get(ctx); minio.ToErrorResponse(err).StatusCode != 500 {
		t.Errorf("Fail500: %v", err)
	}
	p.SetRule(FirstN(len(p.Requests())+1, DropResponse))
	if got, err := get(ctx); err == nil || len(got) != len(data)/2 {
		t.Errorf("DropResponse: %d bytes, %v; want %d and an error", len(got), err, len(data)/2)
	}
	p.SetRule(FirstN(len(p.Requests())+1, StallResponse))
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	got, err := get(sctx)
	cancel()
	if err == nil || len(got) != len(data)/2 {
		t.Errorf("StallResponse: %d bytes, %v; want %d and an error", len(got), err, len(data)/2)
	}
	p.SetRule(nil)
	if got, err := get(ctx); err != nil || !bytes.Equal(got, data) {
		t.Errorf("Pass: %d bytes, %v", len(got), err)
	}
	var faults []string
	for _, r := range p.Requests() {
		faults = append(faults, r.Method+" "+r.Fault.String())
	}
	want := []string{"GET pass", "PUT pass", "GET 500", "GET drop-response", "GET stall-response", "GET pass"}
	if !slices.Equal(faults, want) {
		t.Errorf("requests: %q, want %q", faults, want)
	}
}
