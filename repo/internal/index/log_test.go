package index

import (
	"bytes"
	"log/slog"
	"testing"
)

// badger's cache monitor warns every minute under load that a cache
// "might be too small", with histograms: those go to debug; its other
// warnings stay warnings (issue 13).
func TestLogAdapterCacheHistogramsAtDebug(t *testing.T) {
	var b bytes.Buffer
	a := logAdapter{slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropTime}))}
	// The format strings of badger v4.9.6 db.go monitorCache.
	a.Warningf("%s might be too small. Metrics: %s\n", "Block cache", "hit: 1 miss: 9")
	a.Warningf("Cache life expectancy (in seconds): %+v\n", " -- Histogram: Min value: 0")
	a.Warningf("While forcing compaction on level 0: %v", "disk on fire")
	want := `level=DEBUG msg="badger: Block cache might be too small. Metrics: hit: 1 miss: 9"
level=DEBUG msg="badger: Cache life expectancy (in seconds):  -- Histogram: Min value: 0"
level=WARN msg="badger: While forcing compaction on level 0: disk on fire"
`
	if b.String() != want {
		t.Fatalf("logged:\n%s\nwant:\n%s", b.String(), want)
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
