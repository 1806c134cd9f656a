// Package s3test runs a real S3 store, SeaweedFS's weed mini, on
// 127.0.0.1 for tests, and a fault-injecting proxy to put in front of
// it, like net/http/httptest does for HTTP servers. Tests anywhere may
// import it (repo/storage's and the integration tests alike); it imports
// nothing of cairn.
//
// # Servers
//
// [Start] runs weed mini in a fresh directory with an identity config
// (one access key and secret, [Server.AccessKey] and [Server.SecretKey]),
// on free loopback ports for every listener weed opens (S3, master,
// volume, filer, WebDAV, admin and their gRPC ports; Iceberg, Lance and
// the legacy admin port are switched off), so test binaries that run in
// parallel never collide. It returns once S3 answers a signed request,
// polling until a deadline. A t.Cleanup stops the server by PID
// (SIGTERM, then SIGKILL after a bound) and, if the test failed, logs
// the end of its log. On Linux the kernel also kills weed if the test
// binary dies first. [Shared] starts one server per test binary, for
// tests that only need a bucket of their own ([Server.NewBucket]).
//
// # Requirements
//
// The weed binary comes from `make deps` (.ci/build-weed), which builds
// it once into $XDG_CACHE_HOME/cairn/weed-VERSION (~/.cache by default;
// VERSION is the one integration/tools/seaweedfs/go.mod requires), or
// from the file the environment variable CAIRN_WEED names. When it is
// missing the test skips, or fails when CI is "true".
//
// # Faults
//
// [NewProxy] puts a loopback HTTP proxy in front of a server. A rule
// decides the [Fault] for each request: answer 500, drop the connection
// mid-request or mid-response, stall before or in the middle of the
// response until the client gives up, corrupt a byte of the request, or
// carry out the request and lose its answer. It forwards requests
// unchanged (Host header included), so S3 signatures stay valid.
//
// # Concurrency and resources
//
// Server and Proxy methods are safe for concurrent use. A server is one
// weed process and one goroutine collecting its log (the last 256 KiB are
// kept). No function sleeps for a fixed time: every wait is on a process,
// a request, or a poll bounded by a deadline.
package s3test
