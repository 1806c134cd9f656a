// Package drill proves that a snapshot can really be restored. A drill
// restores the snapshot (or a sample of its files) into a scratch
// directory, compares every file with the whole-file SHA-256 and the
// metadata recorded at backup time, runs the data's own checks, measures
// how long recovery took, and keeps a sealed [Report] in the repository.
//
// # A drill, step by step
//
// [Run]:
//
//  1. Makes a fresh directory cairn-drill-<snapshot>-<digits> inside
//     [Options.Scratch], held with flock(2) while the drill runs. It is
//     removed at the end, whatever happened (read-only directories are
//     made writable first); if it cannot be removed the report says so in
//     [Report.Warnings]. A drill that is killed cannot remove it: the
//     next drill in the same scratch directory removes every such
//     directory whose lock no running drill holds, and says so in its
//     warnings.
//  2. With [Options.SampleFiles] N > 0 and more than N files in the
//     snapshot, chooses what to restore by walking the snapshot's trees:
//     N regular files picked uniformly at random with a generator seeded
//     by the snapshot ID (so a snapshot is always sampled the same way),
//     plus everything a probe needs: every git repository whole (a bare
//     repository's directory, a work tree's .git directory), and every
//     file whose name says it may be a database or a dump (.db, .sqlite,
//     .sqlite3, .db3, .dump, .pgdump, .backup, toc.dat, and their -wal,
//     -journal and -shm companions) or, for a snapshot of class
//     "database", every file.
//  3. Restores with [restore.Run]. Every file is re-hashed against its
//     recorded SHA-256 as it is written; each file that cannot be
//     restored (a damaged or missing blob, naming its pack; a hash
//     mismatch, naming both hashes) becomes a [Failure] naming the file.
//  4. Compares the scratch directory with the snapshot with
//     [restore.Verify]: types, modes, sizes, mtimes, symlink targets,
//     extended attributes, hardlinks, and every file's contents again
//     (owners only when running as root, since only root can restore
//     them). Each difference is a Failure, except for paths that already
//     failed in step 3 (one failure per cause) and paths the restore
//     warned about because the drill environment cannot reproduce them
//     (device nodes when not root, extended attributes the scratch file
//     system refuses): those become warnings.
//  5. The time of steps 3 and 4 is [Report.RestoreSeconds], the measured
//     recovery time.
//  6. Runs the probes (below) and records each with its command line,
//     its exit code and its output.
//  7. The result is "ok" if and only if there is no failure.
//
// [Save] stores the report as a sealed record (drills/<id>); [List] and
// [Latest] read them back.
//
// # Probes
//
// Probes are chosen by what the restored files are, confirmed by their
// contents, and by the snapshot's class:
//
//   - a file starting with "SQLite format 3\x00": sqlite3 FILE
//     'PRAGMA integrity_check' must exit 0 and print exactly "ok" (on
//     standard output and error together);
//   - a git repository (a directory with a HEAD file and objects/ and
//     refs/ directories, or a directory holding such a .git directory):
//     git --git-dir=DIR fsck --full must exit 0;
//   - a PostgreSQL custom-format dump (a file starting with "PGDMP"; a
//     toc.dat starting so names a directory-format dump):
//     pg_restore --list must exit 0;
//   - plain SQL dumps have no probe: they are checked by their hashes;
//   - [Options.Probes] adds a command for a node/plan (or a plan): it runs
//     with sh -c in the restored root with CAIRN_DRILL_ROOT set to it,
//     and passes when it exits 0;
//   - a snapshot of class "git" in which no git repository is found
//     fails.
//
// A probe whose program is not installed fails and says which program is
// missing, so a drill environment without git is visible rather than
// silently skipped. Each probe has [Options.Timeout] (default 10
// minutes); its process group is killed when the time is up. Output
// (standard output and error together) is kept, at most [MaxOutput]
// bytes: the beginning, the end, and from the part between them the
// first few lines that look like errors (error, fatal, mismatch,
// corrupt, fail, in any case). A failed probe's [Failure] reason is the
// probe, how it failed (exit status, timeout, missing program) and
// [Excerpt] of its output: the first error-looking lines and the last
// lines, each bounded, since a tool often says what failed first (git
// fsck's "pack checksum mismatch") and ends with harmless warnings.
//
// Probes run with the drill's privileges on data that came from nodes,
// which the appliance does not trust. The built-in git probe names the
// repository explicitly (no discovery), ignores the system git
// configuration, turns off core.fsmonitor (the one setting in a
// repository's own configuration that fsck could execute), and drops
// GIT_* variables from its environment. Run drills as an unprivileged
// user where that matters.
//
// # What a drill writes
//
// Nothing in the repository but the report, and only through [Save]: the
// restore and the verification only read blobs (each one authenticated
// and re-hashed). Everything else is written inside the scratch
// directory, and removed.
//
// # Memory
//
// The restore's: a 64 MiB blob cache and a read-ahead window of
// [restore.ReadAhead] chunks per worker, plus one record per restored
// directory and one error per file that failed. Sampling holds one tree
// per directory level, the N sampled paths and the paths probes need.
// A report holds at most [MaxFailures] failures and [MaxOutput] bytes of
// output per probe.
//
// # Concurrency
//
// Drills only read the repository, so any number may run at once, each
// in its own scratch directory. Up to four probes run in parallel.
package drill
