package status

import (
	"fmt"
	"strings"
	"time"
)

// ReplicaAccess is what the runbook needs to name about a replica
// besides its state: the S3 credentials file of an object-store replica
// (a path; the secret is never written), if the configuration names one.
type ReplicaAccess struct {
	Credentials string
}

// writeReplicas writes the replicas' state and "The appliance is lost":
// the exact commands to rebuild from a replica on a new machine.
func writeReplicas(b *strings.Builder, st *Status, o RunbookOptions) {
	if len(st.Replicas) == 0 {
		return
	}
	fmt.Fprintf(b, "## Replicas\n\n")
	fmt.Fprintf(b, "Each replica is the whole repository (same ID, same key) in another place, brought up to date by `cairn replicate`,\n")
	fmt.Fprintf(b, "verified and drilled on its own.\n\n")
	fmt.Fprintf(b, "| replica | location | replicated | lag | last verified | last drilled | deletes |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range st.Replicas {
		replicated, lag := "never", HumanBytes(uint64(max(r.LagBytes, 0)))
		if !r.Replicated.IsZero() {
			replicated = r.Replicated.UTC().Format(time.RFC3339)
			lag += ", " + round(r.Lag)
		}
		verified, drilled := "never", "never"
		if !r.LastVerified.IsZero() {
			verified = r.VerifyStatus + " " + r.LastVerified.UTC().Format(time.RFC3339)
		}
		if !r.LastDrilled.IsZero() {
			drilled = r.DrillStatus + " " + r.LastDrilled.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(b, "| %s | `%s` | %s | %s | %s | %s | %s |\n", text(r.Name), text(r.Location), replicated, lag, verified, drilled, text(r.Delete))
	}
	fmt.Fprintln(b)

	fmt.Fprintf(b, "## The appliance is lost\n\n")
	fmt.Fprintf(b, "Everything it held up to the replica's last replication is on each replica. On a new machine:\n\n")
	fmt.Fprintf(b, "1. Install cairn: the package, or the static binary in /usr/local/bin (\"Install\" in docs/operating.md, installed as /usr/share/doc/cairn/docs/operating.md).\n")
	if o.KeyFile != "" {
		fmt.Fprintf(b, "2. Bring the key file (it was `%s`; use the copy kept off the appliance). It opens every replica.\n", text(o.KeyFile))
	} else {
		fmt.Fprintf(b, "2. Bring the passphrase (in a file, for `--password-file`): it opens every replica.\n")
	}
	fmt.Fprintf(b, "3. Rebuild the index from a replica, check it, and list what it holds (the replica is only read):\n\n")
	for _, r := range st.Replicas {
		fmt.Fprintf(b, "From %s:\n\n```sh\n", text(r.Name))
		cairn := replicaVars(b, r, o)
		fmt.Fprintf(b, "%s repair index\n%s check\n%s snapshots\n```\n\n", cairn, cairn, cairn)
	}
	fmt.Fprintf(b, "4. Restore each node's data: the commands of its section above, run on this machine with the flags of the\n")
	fmt.Fprintf(b, "   block above (`--repo \"$REPLICA\"`%s…) in place of the repository's (the restores \"on the appliance\"; a\n", strings.ReplaceAll(credentialFlag(o), `"`, ""))
	fmt.Fprintf(b, "   node restores from the new appliance on its own once it serves, step 5).\n")
	fmt.Fprintf(b, "5. Promote the replica: serve it, and the nodes push into it from now on. Put the appliance's configuration back\n")
	fmt.Fprintf(b, "   (`nodes:` with their keys: from a copy of it, or each node's public line from `cairn keygen --show` on the node);\n")
	fmt.Fprintf(b, "   the new appliance makes a new host key and logs its fingerprint, which the nodes then pin (`--host-key`):\n\n")
	for _, r := range st.Replicas {
		fmt.Fprintf(b, "Serving %s:\n\n```sh\n", text(r.Name))
		cairn := replicaVars(b, r, o)
		fmt.Fprintf(b, "CONFIG=/etc/cairn/cairn.yaml  # the appliance's configuration\n%s serve --config \"$CONFIG\"\n```\n\n", cairn)
	}
	fmt.Fprintf(b, "   Or seed a new primary from it: with the replica served, add the new place under `replicas:` (for example\n")
	fmt.Fprintf(b, "   `new: {to: /srv/cairn/repo}`), run `cairn replicate new`, stop the appliance and serve the new place.\n")
	fmt.Fprintf(b, "6. Configure replicas again for the promoted repository: until then it is the only copy.\n\n")
}

// replicaVars writes the variables that reach replica r from a new
// machine (each block of the runbook begins with its own) and returns
// the cairn command line that uses them.
func replicaVars(b *strings.Builder, r Replica, o RunbookOptions) string {
	fmt.Fprintf(b, "REPLICA=%s\n", shellWord(r.Location))
	if o.KeyFile != "" {
		fmt.Fprintf(b, "KEY=/root/cairn.key  # the repository's key file, from its copy off the appliance\n")
	} else {
		fmt.Fprintf(b, "PASSWORD=/root/cairn.password  # a file holding the passphrase\n")
	}
	cairn := `cairn --repo "$REPLICA"` + credentialFlag(o)
	if !isObjectStore(r.Location) {
		return cairn
	}
	creds := "/etc/cairn/" + r.Name + ".env"
	if a, ok := o.Replicas[r.Name]; ok && a.Credentials != "" {
		creds = a.Credentials
	}
	fmt.Fprintf(b, "CREDENTIALS=%s  # the store's AWS_ACCESS_KEY_ID=… and AWS_SECRET_ACCESS_KEY=…, mode 0600\n", shellWord(creds))
	fmt.Fprintf(b, "STATE=/var/lib/cairn/%s  # this machine's configuration, host key and socket for it\n", shellWord(r.Name))
	fmt.Fprintf(b, "CACHE=/var/cache/cairn/%s  # its index, rebuilt here from the replica alone\n", shellWord(r.Name))
	fmt.Fprintf(b, "mkdir -p \"$STATE\" \"$CACHE\"\n")
	return cairn + ` --s3-credentials "$CREDENTIALS" --state-dir "$STATE" --cache-dir "$CACHE"`
}

func credentialFlag(o RunbookOptions) string {
	if o.KeyFile != "" {
		return ` --key-file "$KEY"`
	}
	return ` --password-file "$PASSWORD"`
}

func isObjectStore(loc string) bool {
	return strings.HasPrefix(loc, "s3://") || strings.HasPrefix(loc, "s3+http://")
}
