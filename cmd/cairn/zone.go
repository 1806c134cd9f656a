package main

import (
	"io"
	"os"
	"strings"
	"time"
	_ "time/tzdata" // zone names resolve on systems without a zoneinfo database
)

// timeLayout is how times are shown to people: in the caller's zone,
// always with the zone's name ("2026-12-07 10:15:00 CET").
const timeLayout = "2006-01-02 15:04:05 MST"

// when formats t for people, in the caller's time zone.
func (g *globalOptions) when(t time.Time) string { return t.In(g.zone()).Format(timeLayout) }

// zone is the caller's time zone: this process's, or inside the
// appliance the one the operator's cairn sent.
func (g *globalOptions) zone() *time.Location {
	if g.loc != nil {
		return g.loc
	}
	return time.Local
}

// callerTZ is this process's TZ, for the appliance to apply as Go
// applies TZ: unset means /etc/localtime, empty means UTC.
func callerTZ() string {
	tz, ok := os.LookupEnv("TZ")
	switch {
	case !ok:
		return ":/etc/localtime"
	case tz == "":
		return "UTC"
	}
	return tz
}

// maxZoneFile bounds a zoneinfo file read for a TZ that names one.
const maxZoneFile = 1 << 20

// zoneOf returns the time zone TZ names, read as Go reads TZ at start: a
// leading ':' dropped, an absolute path read as a zoneinfo file (a
// regular file, at most maxZoneFile bytes), any other name looked up in
// the zoneinfo database; UTC when it cannot be loaded. An empty tz (an
// older cairn sent none) gives this process's own zone.
func zoneOf(tz string) *time.Location {
	if tz == "" {
		return time.Local
	}
	name := strings.TrimPrefix(tz, ":")
	if strings.HasPrefix(name, "/") {
		if loc, err := zoneFile(name); err == nil {
			return loc
		}
		return time.UTC
	}
	if loc, err := time.LoadLocation(name); err == nil && name != "" && name != "Local" {
		return loc
	}
	return time.UTC
}

func zoneFile(path string) (*time.Location, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, os.ErrInvalid
	}
	b, err := io.ReadAll(io.LimitReader(f, maxZoneFile))
	if err != nil {
		return nil, err
	}
	return time.LoadLocationFromTZData(path, b)
}
