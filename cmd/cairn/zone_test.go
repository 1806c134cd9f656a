package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The operator's TZ is applied inside the appliance as Go applies TZ,
// and every time shown names its zone.
func TestZoneOf(t *testing.T) {
	garbage := filepath.Join(t.TempDir(), "zone")
	if err := os.WriteFile(garbage, []byte("not a zoneinfo file"), 0o600); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		tz, want string
	}{
		{"Asia/Tokyo", "2026-12-07 18:30:00 JST"},
		{":Asia/Tokyo", "2026-12-07 18:30:00 JST"},
		{"Europe/Paris", "2026-12-07 10:30:00 CET"},
		{"UTC", "2026-12-07 09:30:00 UTC"},
		{"Nowhere/Nothing", "2026-12-07 09:30:00 UTC"}, // as Go: an unknown zone is UTC
		{"Local", "2026-12-07 09:30:00 UTC"},           // a file named Local, which there is not
		{"../../etc/passwd", "2026-12-07 09:30:00 UTC"},
		{garbage, "2026-12-07 09:30:00 UTC"},
		{"/dev/zero", "2026-12-07 09:30:00 UTC"}, // not a regular file: not read
		{"/nonexistent/zone", "2026-12-07 09:30:00 UTC"},
	} {
		g := &globalOptions{loc: zoneOf(c.tz)}
		if got := g.when(at); got != c.want {
			t.Errorf("TZ=%q: %s, want %s", c.tz, got, c.want)
		}
	}
	if zoneOf("") != time.Local {
		t.Errorf("no TZ sent (an older cairn): not the appliance's own zone")
	}
	t.Setenv("TZ", "")
	if got := callerTZ(); got != "UTC" {
		t.Errorf("TZ empty: %q", got)
	}
	os.Unsetenv("TZ")
	if got := callerTZ(); got != ":/etc/localtime" {
		t.Errorf("TZ unset: %q", got)
	}
	t.Setenv("TZ", "Asia/Tokyo")
	if got := callerTZ(); got != "Asia/Tokyo" {
		t.Errorf("TZ set: %q", got)
	}
}
