package blob_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cairnbackup/cairn/repo/blob"
)

// errors.Join(err, ErrCorrupt) printed a second line, "corrupt", after
// every message that carried the marker. Corrupt marks an error without
// changing its message.
func TestCorruptKeepsMessage(t *testing.T) {
	base := errors.New("record does not decode")
	err := fmt.Errorf("snapshot 0123abcd: %w", blob.Corrupt(base))
	if got, want := err.Error(), "snapshot 0123abcd: record does not decode"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	if !errors.Is(err, blob.ErrCorrupt) || !errors.Is(err, base) {
		t.Errorf("errors.Is lost a marker: %v", err)
	}
}
