package torture

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Bit rot with a replica: the bit-rot damage of the packs (blob data,
// headers, trees) and of snapshot files, on a repository that has a
// replica (a directory, replicated before the damage). The damage must
// be found and put back from the replica, by cairn repair packs or by
// the verify job with heal: true, and then every snapshot must restore
// bit-identical: repaired, nothing lost. Without a replica the same
// damage is detected as before (bitrot_test.go).
func TestBitRotHealedFromReplica(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed, 0x4e91))
	g := makeGolden(t, rng, nil)
	replica := filepath.Join(g.e.dir, "replica")
	writeReplicaConfig(t, g.e, replica)
	g.e.ok("replicate")
	var cases [][2]int // target, damage
	for i, tg := range rotTargets {
		if tg.class != "data" && tg.class != "header" && tg.class != "snapshot" {
			continue
		}
		for d := range damages {
			if *fullRun || d == int(rng.IntN(len(damages))) || tg.name == "pack: blob data" && d == 0 {
				cases = append(cases, [2]int{i, d})
			}
		}
	}
	for _, c := range cases {
		tg, dmg := rotTargets[c[0]], c[1]
		// The verify job heals flips and cuts; repair packs the rest.
		how := "repair packs"
		if dmg != 1 {
			how = "verify job"
		}
		t.Run(tg.name+"/"+damages[dmg].name, func(t *testing.T) {
			h := fnv.New64a()
			h.Write([]byte(t.Name()))
			rng := rand.New(rand.NewPCG(seed, h.Sum64()))
			lost, note := healOne(t, g, replica, tg, dmg, how, rng)
			record("bit rot with a replica: "+tg.name, 1, 1, lost, damages[dmg].name+": "+note)
		})
	}
}

// writeReplicaConfig writes e's configuration with the directory
// replica at dir, and a verify job that reads every pack and heals.
func writeReplicaConfig(t *testing.T, e *env, dir string) {
	t.Helper()
	cfg := fmt.Sprintf("replicas:\n  usb:\n    to: %s\njobs:\n  verify: {cycle: 1h, heal: true}\n", dir)
	if err := os.WriteFile(e.repo+".yaml", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// healOne damages a copy of the golden repository (its replica copied
// with it), heals it (how: "repair packs" or "verify job") and judges:
// the damage found and repaired from the replica, a clean check, and
// every snapshot restored bit-identical. It returns 1 if data was lost.
func healOne(t *testing.T, g *golden, replica string, tg rotTarget, dmg int, how string, rng *rand.Rand) (int, string) {
	e := g.clone(t)
	rcopy := filepath.Join(e.dir, "replica")
	if out, err := exec.Command("cp", "-a", replica, rcopy).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	writeReplicaConfig(t, e, rcopy)
	reg := tg.pick(t, e, rng)
	what := damages[dmg].apply(t, reg, rng)
	t.Logf("%s: %s %s (%s), healed by the %s", tg.name, damages[dmg].name, filepath.Base(reg.path), what, how)
	lost := 0
	bad := func(format string, args ...any) {
		t.Errorf(format, args...)
		lost = 1
	}
	var out result
	if how == "verify job" {
		out = e.run(nil, nil, "jobs", "run", "verify")
		if out.code != 0 || !strings.Contains(out.stdout, "repaired from replica usb ("+rcopy+")") {
			bad("the verify job with heal: true: %s", out)
		}
	} else {
		out = e.run(nil, nil, "repair", "packs", "--read-data")
		if out.code != 0 || !strings.Contains(out.stdout, ": repaired from replica usb ("+rcopy+")\n") {
			bad("repair packs: %s", out)
		}
	}
	repaired := strings.Count(out.stdout, "repaired from replica usb")
	if r := e.run(nil, nil, "check", "--read-data"); r.code != 0 {
		bad("check after healing: %s", r)
	}
	whole := 0
	for _, id := range g.order {
		silent, notIdentical, _ := e.judgeRestore(id, g.src, g.snaps[id])
		for _, s := range silent {
			bad("restore of %s after healing: %s", id[:8], s)
		}
		if len(notIdentical) > 0 {
			bad("after healing, %v of snapshot %s do not restore bit-identical", notIdentical, id[:8])
		} else {
			whole++
		}
	}
	return lost, fmt.Sprintf("found and repaired from the replica by the %s (%d objects), check clean, %d of %d snapshots restore whole", how, repaired, whole, len(g.order))
}
