package wire

import (
	"context"
	"fmt"

	"github.com/cairnbackup/cairn/repo/blob"
)

// Loading many blobs at once.
//
// [Client.LoadBlob] sends one request and waits for its reply: a restore
// over SSH that loads a file's chunks that way keeps at most a few
// requests in flight, and with many small files (one chunk each) the
// appliance waits for the next request about as long as it works. A
// [Client] is therefore a snapfs.BatchLoader: a restore's planner reads
// ahead across files and hands whole batches to [Client.LoadBlobs],
// which writes every request of the batch with one flush and takes the
// replies as they come. The protocol is unchanged: these are the same
// LoadBlob requests, pipelined as the protocol always allowed (from
// version 2 on answered with blobs as stored, see stored.go).
//
// Memory: the replies of a batch are the caller's to bound (the
// planner admits a batch's bytes against its budget before asking).

// BatchReads reports that LoadBlobs is cheaper than LoadBlob blob by
// blob: every request waits a round trip through the appliance.
func (c *Client) BatchReads() bool { return true }

// LoadBlobs loads the blobs hs with pipelined requests and calls fn for
// each, in order, with its plaintext once it hashes to its ID (fn may
// keep it), or with the error LoadBlob gives for it. It returns when
// every call of fn has returned; if the session ends or ctx ends first it
// returns that error, and blobs not loaded by then get no call.
func (c *Client) LoadBlobs(ctx context.Context, hs []blob.Handle, fn func(i int, data []byte, err error)) error {
	reqs := make([]uint32, 0, len(hs))
	chs := make([]chan reply, 0, len(hs))
	defer func() {
		for _, req := range reqs {
			c.finish(req)
		}
	}()
	var body []byte
	for i, h := range hs {
		req, ch, err := c.start(1)
		if err != nil {
			return err
		}
		reqs, chs = append(reqs, req), append(chs, ch)
		body = (&LoadBlob{Req: req, Handle: h}).Append(body[:0])
		if err := c.send(TypeLoadBlob, body, i == len(hs)-1); err != nil {
			return err
		}
	}
	for i, ch := range chs {
		r, err := c.wait(ctx, ch)
		if err != nil {
			return err
		}
		if r.t != TypeBlob && (r.t != TypeStoredBlob || c.welcome.Version < 2) {
			return fmt.Errorf("wire: expected blob, got %s: %w", r.t, ErrProtocol)
		}
		data, err := c.blobReply(r, hs[i])
		fn(i, data, err)
	}
	return nil
}
