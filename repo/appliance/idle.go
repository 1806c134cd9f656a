package appliance

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// idleReader ends a stream that stays silent for d, as the wire
// protocol's idle timeout ends a silent session: it cancels the push
// (with the idle timeout as the cause) and closes the stream (when it can
// be closed, which ends a read blocked on it); reads then fail with the
// idle-timeout error.
type idleReader struct {
	r     io.Reader
	d     time.Duration
	timer *time.Timer
	fired atomic.Bool
}

func newIdleReader(r io.Reader, d time.Duration, cancel context.CancelCauseFunc) *idleReader {
	ir := &idleReader{r: r, d: d}
	ir.timer = time.AfterFunc(d, func() {
		ir.fired.Store(true)
		cancel(ir.err())
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
	})
	return ir
}

func (ir *idleReader) err() error { return fmt.Errorf("no data for %s: idle timeout", ir.d) }

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if ir.fired.Load() {
		return n, ir.err()
	}
	ir.timer.Reset(ir.d)
	return n, err
}

func (ir *idleReader) stop() { ir.timer.Stop() }
