package appliance

import (
	"context"
	"io"
	"testing"
	"testing/synctest"
	"time"
)

// A stream that sends something at least every idle timeout is read to
// its end, however long it takes; one silent for the idle timeout is
// ended: the push's context is cancelled with the idle timeout as its
// cause, the stream is closed under a read blocked on it, and reads say
// why.
func TestIdleReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		ctx, cancel := context.WithCancelCause(t.Context())
		ir := newIdleReader(pr, time.Minute, cancel)
		defer ir.stop()
		go func() {
			for range 5 {
				time.Sleep(59 * time.Second) // the fake clock of the bubble
				pw.Write([]byte("x"))
			}
		}()
		buf := make([]byte, 8)
		for i := range 5 {
			if n, err := ir.Read(buf); n != 1 || err != nil {
				t.Fatalf("read %d after 59s: %d, %v", i, n, err)
			}
		}
		start := time.Now()
		n, err := ir.Read(buf) // nothing comes any more
		if n != 0 || err == nil || err.Error() != "no data for 1m0s: idle timeout" {
			t.Fatalf("silent stream: %d, %v", n, err)
		}
		if waited := time.Since(start); waited != time.Minute {
			t.Errorf("ended after %s of silence", waited)
		}
		if cause := context.Cause(ctx); cause == nil || cause.Error() != "no data for 1m0s: idle timeout" {
			t.Errorf("the push's context ended with %v", cause)
		}
		if _, err := pw.Write([]byte("late")); err != io.ErrClosedPipe {
			t.Errorf("the stream was not closed: a late write got %v", err)
		}
	})
}
