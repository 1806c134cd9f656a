// Package sshtest runs a real OpenSSH sshd on 127.0.0.1 for integration
// tests and makes the ed25519 keys to reach it, like net/http/httptest
// does for HTTP servers.
//
// # Servers
//
// [Start] renders an sshd_config into t.TempDir(), starts
// /usr/sbin/sshd -D -e -f sshd_config on a free loopback port, and returns
// once sshd has logged "Server listening on". The server accepts only
// public-key logins for [Config.User], with the lines of
// [Config.AuthorizedKeys] (usually forced commands such as
// command="/abs/cairn serve --stdio --node lyra",restrict ssh-ed25519 …).
// A t.Cleanup kills sshd, with any connection still open, and, if the
// test failed, logs sshd's whole log. On Linux the kernel also kills sshd
// if the test binary dies before its cleanups run.
//
// Clients reach a server with the OpenSSH client ([SSHD.SSHArgs], which
// checks the host key strictly and never prompts) or with
// golang.org/x/crypto/ssh ([SSHD.ClientConfig], pinned to the host key).
// [SSHArgsFor] builds the same client arguments for any other server, such
// as cairn's embedded SSH server.
//
// # Requirements
//
// sshd must be at /usr/sbin/sshd (Debian package openssh-server) and the
// client at /usr/bin/ssh (openssh-client). When one is missing, tests skip,
// or fail when the environment variable CI is "true". Start creates
// /run/sshd, sshd's privilege-separation directory, which needs root.
//
// # Concurrency and resources
//
// Every [SSHD] method is safe for concurrent use. Each server is one sshd
// process plus one per open connection, and one goroutine that collects
// sshd's log in memory for the lifetime of the test. No function sleeps:
// every wait is on sshd's output or on a process, with a time limit.
package sshtest
