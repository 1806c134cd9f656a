package s3test

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault is what a [Proxy] does with one request.
type Fault int

const (
	// Pass forwards the request and its response unchanged.
	Pass Fault = iota
	// Fail500 answers 500 InternalError without forwarding.
	Fail500
	// DropRequest reads half of the request body (none if it has none)
	// and closes the connection without answering.
	DropRequest
	// DropResponse forwards the request, sends the response's headers and
	// half its body, then closes the connection.
	DropResponse
	// Stall reads the request and answers nothing until the client gives
	// up (or the proxy is closed).
	Stall
	// StallResponse forwards the request, sends the response's headers and
	// half its body, then nothing more until the client gives up.
	StallResponse
	// CorruptRequest forwards the request with the middle byte of its body
	// inverted, as a faulty network or middlebox might.
	CorruptRequest
	// LoseResponse forwards the request, so the server carries it out,
	// then closes the connection without answering.
	LoseResponse
)

// Request describes a request a [Proxy] received.
type Request struct {
	N      int // 1 for the first request the proxy received
	Method string
	Path   string // the URL path: /BUCKET/KEY
	Query  string // the raw query, e.g. "partNumber=2&uploadId=…"
	Range  string // the Range header, e.g. "bytes=0-99"
	// Sums names the checks of its body it carried: "Content-MD5",
	// "CRC32C" (x-amz-checksum-crc32c), both joined by "+", or "".
	Sums  string
	Fault Fault // what the proxy did with it
}

// Proxy is a loopback HTTP proxy in front of an S3 server that injects
// faults.
type Proxy struct {
	// Endpoint is the proxy's address, "127.0.0.1:PORT".
	Endpoint string

	target string
	tr     *http.Transport
	srv    *http.Server
	closed chan struct{}

	mu   sync.Mutex
	rule func(Request) Fault
	seen []Request
	hook func(Request)
}

// NewProxy starts a proxy to target ("HOST:PORT", plain HTTP) that passes
// every request until [Proxy.SetRule] says otherwise. A t.Cleanup closes
// it, ending stalled requests.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("s3test: proxy: %v", err)
	}
	p := &Proxy{
		Endpoint: ln.Addr().String(),
		target:   target,
		tr:       &http.Transport{ResponseHeaderTimeout: time.Minute, DisableCompression: true},
		closed:   make(chan struct{}),
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: time.Minute}
	go p.srv.Serve(ln)
	t.Cleanup(func() {
		close(p.closed)
		p.srv.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

// SetRule makes rule decide the fault of every later request; nil passes
// everything.
func (p *Proxy) SetRule(rule func(Request) Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule = rule
}

// OnRequest calls fn, in the proxy's handler, for every later request
// once its fault is decided and before it is carried out; nil stops.
func (p *Proxy) OnRequest(fn func(Request)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = fn
}

// Requests returns the requests received so far, in order.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.seen...)
}

// FirstN returns a rule giving fault to the first n requests and passing
// the rest.
func FirstN(n int, fault Fault) func(Request) Fault {
	return func(r Request) Fault {
		if r.N <= n {
			return fault
		}
		return Pass
	}
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	req := Request{N: len(p.seen) + 1, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Range: r.Header.Get("Range"), Sums: sums(r.Header)}
	if p.rule != nil {
		req.Fault = p.rule(req)
	}
	p.seen = append(p.seen, req)
	hook := p.hook
	p.mu.Unlock()
	if hook != nil {
		hook(req)
	}

	switch req.Fault {
	case Fail500:
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
			`<Error><Code>InternalError</Code><Message>fault injected by s3test.Proxy</Message></Error>`)
		return
	case DropRequest:
		if r.ContentLength > 0 {
			io.CopyN(io.Discard, r.Body, r.ContentLength/2)
		}
		panic(http.ErrAbortHandler) // closes the connection, logs nothing
	case Stall:
		io.Copy(io.Discard, r.Body)
		p.stall(r)
		panic(http.ErrAbortHandler)
	}

	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = "http"
	out.URL.Host = p.target
	out.Host = r.Host // signed by the client
	if r.ContentLength == 0 {
		out.Body = nil
	} else if req.Fault == CorruptRequest {
		out.Body = &flipReader{r: r.Body, at: r.ContentLength / 2}
	}
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, "s3test proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if req.Fault == LoseResponse {
		io.Copy(io.Discard, resp.Body)
		panic(http.ErrAbortHandler)
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if req.Fault == DropResponse || req.Fault == StallResponse {
		half := resp.ContentLength / 2
		io.CopyN(w, resp.Body, half)
		http.NewResponseController(w).Flush()
		if req.Fault == StallResponse {
			p.stall(r)
		}
		panic(http.ErrAbortHandler)
	}
	io.Copy(w, resp.Body)
}

// flipReader inverts the byte at offset at of what r reads.
type flipReader struct {
	r   io.ReadCloser
	off int64
	at  int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }

// stall waits until the client goes away or the proxy closes.
func (p *Proxy) stall(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-p.closed:
	}
}

// String names the fault.
func (f Fault) String() string {
	switch f {
	case Pass:
		return "pass"
	case Fail500:
		return "500"
	case DropRequest:
		return "drop-request"
	case DropResponse:
		return "drop-response"
	case Stall:
		return "stall"
	case StallResponse:
		return "stall-response"
	case CorruptRequest:
		return "corrupt-request"
	case LoseResponse:
		return "lose-response"
	}
	return "fault-" + strconv.Itoa(int(f))
}

func sums(h http.Header) string {
	var s []string
	if h.Get("Content-Md5") != "" {
		s = append(s, "Content-MD5")
	}
	if h.Get("X-Amz-Checksum-Crc32c") != "" {
		s = append(s, "CRC32C")
	}
	return strings.Join(s, "+")
}
