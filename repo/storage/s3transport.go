package storage

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
)

// StallError is the cause of a request that moved no data, in either
// direction, for the backend's idle timeout, or that outlived its
// maximum duration.
type StallError struct {
	Idle    time.Duration // the idle timeout, when that ended the request
	Maximum time.Duration // the maximum duration, when that ended it
}

func (e *StallError) Error() string {
	if e.Maximum > 0 {
		return fmt.Sprintf("request still running after %v, its limit", e.Maximum)
	}
	return fmt.Sprintf("no data moved for %v", e.Idle)
}

// Timeout reports true, like other network timeouts.
func (e *StallError) Timeout() bool { return true }

// watchdogTransport ends a request whose body or response moves no data
// for idle, or that runs longer than max: a stalled server, or one that
// stops reading what is sent to it, can hold a request only that long.
// The request's context is cancelled, so the connection is closed.
type watchdogTransport struct {
	base      http.RoundTripper
	idle, max time.Duration
}

func (t *watchdogTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	w := &watch{cancel: cancel, idle: t.idle}
	w.timer = time.AfterFunc(t.idle, func() { w.fire(&StallError{Idle: t.idle}) })
	w.deadline = time.AfterFunc(t.max, func() { w.fire(&StallError{Maximum: t.max}) })
	out := req.WithContext(ctx) // a shallow copy: its Body may be replaced
	if req.Body != nil && req.Body != http.NoBody {
		out.Body = &watchedBody{rc: req.Body, w: w}
	}
	if req.GetBody != nil {
		out.GetBody = func() (io.ReadCloser, error) {
			b, err := req.GetBody()
			if err != nil || b == http.NoBody {
				return b, err
			}
			return &watchedBody{rc: b, w: w}, nil
		}
	}
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		w.stop()
		if cause := w.cause.Load(); cause != nil {
			return nil, *cause
		}
		return nil, err
	}
	w.kick()
	resp.Body = &watchedBody{rc: resp.Body, w: w, response: true}
	return resp, nil
}

// watch is the timer of one request.
type watch struct {
	idle            time.Duration
	timer, deadline *time.Timer
	cancel          context.CancelFunc
	cause           atomic.Pointer[error]
}

func (w *watch) fire(cause error) {
	w.cause.CompareAndSwap(nil, &cause)
	w.cancel()
}

// kick restarts the idle timer: data moved.
func (w *watch) kick() { w.timer.Reset(w.idle) }

func (w *watch) stop() {
	w.timer.Stop()
	w.deadline.Stop()
	w.cancel()
}

// watchedBody kicks the watch on every read that moves data. Closing a
// response body ends the request.
type watchedBody struct {
	rc       io.ReadCloser
	w        *watch
	response bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.kick()
	}
	if err != nil && err != io.EOF {
		if cause := b.w.cause.Load(); cause != nil {
			err = *cause
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	if b.response {
		b.w.stop()
	}
	return err
}

// newHTTPTransport returns the transport of an S3 backend: minio-go's
// defaults with connecting bounded by the idle timeout (at most 30 s),
// wrapped in the watchdog, which bounds the rest.
func newHTTPTransport(secure bool, rootCAs *x509.CertPool, idle, max time.Duration) http.RoundTripper {
	dialTimeout := min(idle, 30*time.Second)
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       time.Minute,
		TLSHandshakeTimeout:   dialTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // objects are stored as sent
	}
	if secure {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: rootCAs}
	}
	return &watchdogTransport{base: tr, idle: idle, max: max}
}

// retryable reports whether err, from one attempt of a request, may go
// away when the request is sent again: the store answered with a 5xx,
// 408, 429, a throttling code or BadDigest (the body changed on the way), or no answer came (connection refused
// or reset, a timeout, a stall). A 4xx answer, a certificate the client
// refuses, or a cancelled ctx are final.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if _, ok := errors.AsType[*rangeError](err); ok {
		return false
	}
	if er, ok := errors.AsType[minio.ErrorResponse](err); ok && (er.StatusCode != 0 || er.Code != "") {
		switch er.Code {
		case "BadDigest", "RequestTimeout", "SlowDown", "SlowDownRead", "SlowDownWrite", "Throttling", "ThrottlingException",
			"RequestLimitExceeded", "RequestThrottled", "InternalError", "ServiceUnavailable":
			return true
		}
		s := er.StatusCode
		return s >= 500 || s == http.StatusRequestTimeout || s == http.StatusTooManyRequests
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &record) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return false
	}
	return true
}

// backoff returns the wait before attempt n+1 (n ≥ 1): base doubled for
// each earlier retry, capped at max, of which a random half is taken off
// so that clients failing together do not retry together.
func backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}
