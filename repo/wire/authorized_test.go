package wire_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/repotest"
	"github.com/cairnbackup/cairn/repo/wire"
)

// SessionConfig.Authorized is asked before each request: once it fails
// (the appliance reloaded a configuration without the node's key), the
// next request, whatever it is, ends the session with a permission error
// and nothing of it is done. Requests before that are served.
func TestServeAuthorizedBeforeEachRequest(t *testing.T) {
	r := repotest.New(t)
	data := []byte("a blob sent after the key was revoked")
	for _, tc := range []struct {
		name string
		send func(c *rawClient)
	}{
		{"have-blobs", func(c *rawClient) {
			c.send(wire.TypeHaveBlobs, (&wire.HaveBlobs{Req: 2, Handles: []blob.Handle{dataHandle(data)}}).Append(nil))
		}},
		{"put-blob", func(c *rawClient) { c.putBlob(dataHandle(data), data) }},
		{"list-snapshots", func(c *rawClient) {
			c.send(wire.TypeListSnapshots, (&wire.ListSnapshots{Req: 2}).Append(nil))
		}},
		{"bye", func(c *rawClient) { c.send(wire.TypeBye, nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := repoState(t, r)
			var revoked atomic.Pointer[error]
			sc := config(wire.PermPush | wire.PermRead)
			sc.Authorized = func() error {
				if p := revoked.Load(); p != nil {
					return *p
				}
				return nil
			}
			s := serve(t, r, sc)
			c := newRawClient(t, s)
			c.hello("lyra")
			if has := c.haveBlobs(1, dataHandle(data)); has[0] {
				t.Fatal("the blob exists already")
			}
			err := errors.New("the key SHA256:x of node lyra was revoked")
			revoked.Store(&err)
			tc.send(c)
			c.expectError(wire.CodePermissionDenied, "the key SHA256:x of node lyra was revoked")
			if _, err := s.wait(); err == nil || err.Error() != "the key SHA256:x of node lyra was revoked" {
				t.Fatalf("serve: %v", err)
			}
			assertState(t, r, before)
		})
	}
}
