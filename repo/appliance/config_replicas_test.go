package appliance

import (
	"testing"
	"time"
)

// replicas: is checked like the rest of the file: FILE:LINE: KEY:
// message, nothing replaced.
func TestConfigReplicasChecked(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"replicas:\n  usb: {}\n", "/etc/c.yaml:2: replicas.usb.to: missing: give a directory or an s3:// URL"},
		{"replicas:\n  usb:\n    to: mnt/usb\n", `/etc/c.yaml:3: replicas.usb.to: "mnt/usb": give an absolute directory`},
		{"replicas:\n  usb:\n    to: /\n", `/etc/c.yaml:3: replicas.usb.to: "/": give a directory of its own`},
		{"replicas:\n  usb:\n    to: ftp://host/x\n", `/etc/c.yaml:3: replicas.usb.to: repository location "ftp://host/x": only s3:// and s3+http:// URLs are supported; anything else is a directory`},
		{"replicas:\n  off:\n    to: s3://s3.example.net/Bad_Bucket\n", `/etc/c.yaml:3: replicas.off.to: s3 URL: bucket: character 'B' is not allowed (use lowercase letters, digits, '.' and '-')`},
		{"replicas:\n  \"u b\":\n    to: /mnt/usb\n", `/etc/c.yaml:2: replicas.u b: replica name "u b" has the character ' '; use letters, digits, '.', '_' and '-'`},
		{"replicas:\n  usb:\n    to: /mnt/usb\n    schedule: \"61 * * * *\"\n", `/etc/c.yaml:4: replicas.usb.schedule: "61 * * * *": end of range (61) above maximum (59): 61`},
		{"replicas:\n  usb:\n    to: /mnt/usb\n    delete: sometimes\n", `/etc/c.yaml:4: replicas.usb.delete: "sometimes": give never, or after SPAN (such as after 30d)`},
		{"replicas:\n  usb:\n    to: /mnt/usb\n    delete: after 0d\n", `/etc/c.yaml:4: replicas.usb.delete: "after 0d": a delay of zero deletes at once; give a delay such as after 30d`},
		{"replicas:\n  usb:\n    to: /mnt/usb\n    delete: after 3w\n", `/etc/c.yaml:4: replicas.usb.delete: span "3w": unknown unit 'w' (use y, m, d, h)`},
		{"replicas:\n  usb:\n    to: /mnt/usb\n    s3_credentials: /etc/cairn/usb.env\n", "/etc/c.yaml:4: replicas.usb.s3_credentials: only for a replica in an object store (s3:// or s3+http://); a directory replica keeps its index inside it"},
		{"replicas:\n  off:\n    to: s3://s3.example.net/cairn\n    cache_dir: cache\n", `/etc/c.yaml:4: replicas.off.cache_dir: "cache": give an absolute path`},
		{"replicas:\n  usb:\n    to: /mnt/usb\n    transfers: 65\n", "/etc/c.yaml:4: replicas.usb.transfers: 65 is above the most allowed, 64"},
		{"replicas:\n  usb:\n    to: /mnt/usb\n    verify: {schedule: \"@sometimes\"}\n", `/etc/c.yaml:4: replicas.usb.verify.schedule: "@sometimes": unrecognized descriptor: @sometimes`},
		{"replicas:\n  usb:\n    to: /mnt/usb\n    drill: {probes: {lyra: \"true\"}}\n", "/etc/c.yaml:4: replicas.usb.drill.probes: probes are those of jobs.drill; give them there"},
		{"replicas:\n  usb:\n    to: /mnt/usb\n    retention:\n      default: {}\n", "/etc/c.yaml:5: replicas.usb.retention.default: keeps nothing; give at least one keep_* rule"},
		{"replicas:\n  usb:\n    to: /mnt/usb\n    delete: after 30d\n    retention:\n      default: {keep_monthly: 24}\n", "/etc/c.yaml:5: replicas.usb.retention: not with delete: after 30d: a replica either follows the primary's deletions after a delay or keeps its own history; choose one"},
		{"replicas:\n  usb:\n    to: /mnt/usb\n    speed: 9\n", "/etc/c.yaml:4: replicas.usb.speed: unknown key"},
	} {
		_, err := ParseConfig([]byte(c.doc), "/etc/c.yaml")
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\n got %v\nwant %s", c.doc, err, c.want)
		}
	}

	cfg, err := ParseConfig([]byte("jobs:\n  verify: {schedule: \"@daily\", cycle: 30d}\n  drill: {schedule: \"0 4 * * *\", probes: {lyra: \"true\"}}\n"+
		"replicas:\n  usb:\n    to: /mnt/usb/cairn\n    schedule: \"@weekly\"\n    delete: after 30d\n"+
		"  offsite:\n    to: s3://s3.example.net/cairn-rhea\n    schedule: \"30 3 * * *\"\n    delete: never\n    verify: {schedule: \"@weekly\", cycle: 90d}\n    drill: {schedule: \"@monthly\", sample_files: 100}\n"), "/etc/c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	usb, off := cfg.Replicas["usb"], cfg.Replicas["offsite"]
	if usb.Delete.Delay() != 30*24*time.Hour || usb.Delete.String() != "after 30d" || off.Delete.String() != "never" || usb.Transfers != 4 {
		t.Fatalf("usb %+v offsite %+v", usb, off)
	}
	if v := cfg.VerifyOf("usb"); v.Schedule != "@daily" || v.CycleDuration() != 30*24*time.Hour {
		t.Fatalf("usb verifies as jobs.verify: %+v", v)
	}
	if v := cfg.VerifyOf("offsite"); v.Schedule != "@weekly" || v.CycleDuration() != 90*24*time.Hour {
		t.Fatalf("offsite verifies on its own: %+v", v)
	}
	if d := cfg.DrillOf("offsite"); d.Schedule != "@monthly" || d.SampleFiles != 100 || d.Probes["lyra"] != "true" {
		t.Fatalf("offsite drills on its own, with jobs.drill's probes: %+v", d)
	}
	a := &Appliance{}
	var names []string
	for _, j := range a.jobs(cfg) {
		names = append(names, j.Name+" "+j.Kind+" "+j.Schedule)
	}
	want := "verify verify @daily|drill drill 0 4 * * *|replicate/offsite replica/offsite 30 3 * * *|verify/offsite replica/offsite @weekly|drill/offsite replica/offsite @monthly|replicate/usb replica/usb @weekly|verify/usb replica/usb @daily|drill/usb replica/usb 0 4 * * *"
	if got := joinBar(names); got != want {
		t.Fatalf("jobs:\n got %s\nwant %s", got, want)
	}
}

func joinBar(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += "|"
		}
		out += v
	}
	return out
}
