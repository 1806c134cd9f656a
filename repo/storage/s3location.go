package storage

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// S3Location is where an object-store repository lives: an S3 endpoint, a
// bucket, and a key prefix under which every object of the repository is
// kept. [ParseS3URL] makes one from the URL an operator writes.
type S3Location struct {
	// Endpoint is "HOST" or "HOST:PORT" as written in the URL, e.g.
	// "s3.example.net", "127.0.0.1:8333" or "[::1]:8333". Without a port,
	// HTTPS uses 443.
	Endpoint string
	// Secure is true for s3:// (HTTPS) and false for s3+http:// (plain
	// HTTP, for loopback and LAN stores).
	Secure bool
	// Bucket is the bucket name (checked against S3's naming rules).
	Bucket string
	// Prefix is the key prefix of every object, without leading or
	// trailing slash, or "" for the root of the bucket.
	Prefix string
}

// maxS3URL bounds the URL ParseS3URL accepts.
const maxS3URL = 1024

// String returns the location as a URL that [ParseS3URL] reads back.
func (l S3Location) String() string {
	scheme := "s3+http"
	if l.Secure {
		scheme = "s3"
	}
	s := scheme + "://" + l.Endpoint + "/" + l.Bucket
	if l.Prefix != "" {
		s += "/" + l.Prefix
	}
	return s
}

// ParseS3URL parses a repository location of the form
// s3://HOST[:PORT]/BUCKET[/PREFIX] (HTTPS) or
// s3+http://HOST:PORT/BUCKET[/PREFIX] (plain HTTP, which needs a port).
// HOST is a DNS name, an IPv4 address or a bracketed IPv6 address;
// BUCKET follows S3's naming rules; PREFIX is one or more segments of
// letters, digits, '.', '-' and '_' separated by single slashes. One
// trailing slash is ignored. Credentials, queries, fragments and
// percent-escapes are refused. Errors never repeat the part of the URL
// before the host, where a user name and secret would be.
func ParseS3URL(s string) (S3Location, error) {
	var l S3Location
	if len(s) > maxS3URL {
		return l, fmt.Errorf("s3 URL: %d bytes is longer than the limit of %d", len(s), maxS3URL)
	}
	rest, ok := strings.CutPrefix(s, "s3://")
	if ok {
		l.Secure = true
	} else if rest, ok = strings.CutPrefix(s, "s3+http://"); !ok {
		return l, errors.New(`s3 URL: want s3://HOST[:PORT]/BUCKET[/PREFIX] (HTTPS) or s3+http://HOST:PORT/BUCKET[/PREFIX] (plain HTTP)`)
	}
	authority, path, _ := strings.Cut(rest, "/")
	if strings.Contains(rest, "@") { // anywhere: a secret may hold a '/'
		return l, errors.New("s3 URL: credentials do not belong in the URL (they would show in process lists and logs); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or use a credentials file")
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		return l, fmt.Errorf("s3 URL: %q at byte %d: queries and fragments are not allowed", s[i], i+1)
	}
	if err := checkEndpoint(authority, l.Secure); err != nil {
		return l, fmt.Errorf("s3 URL: %w", err)
	}
	l.Endpoint = authority
	path = strings.TrimSuffix(path, "/")
	bucket, prefix, _ := strings.Cut(path, "/")
	if err := checkBucket(bucket); err != nil {
		return l, fmt.Errorf("s3 URL: %w", err)
	}
	l.Bucket = bucket
	if strings.Contains(path, "/") {
		if err := checkPrefix(prefix); err != nil {
			return l, fmt.Errorf("s3 URL: %w", err)
		}
		l.Prefix = prefix
	}
	return l, nil
}

// checkEndpoint checks HOST[:PORT]; secure tells whether the port may be
// left out.
func checkEndpoint(authority string, secure bool) error {
	if authority == "" {
		return errors.New("no host")
	}
	host, port := authority, ""
	if strings.HasPrefix(authority, "[") {
		end := strings.Index(authority, "]")
		if end < 0 {
			return errors.New("IPv6 address without closing ']'")
		}
		host, port = authority[1:end], authority[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return fmt.Errorf("unexpected %q after the IPv6 address", port)
		}
		port = strings.TrimPrefix(port, ":")
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Errorf("host [%s] is not an IPv6 address (zones are not supported)", host)
		}
		if port == "" && strings.HasSuffix(authority, ":") {
			return errors.New("empty port")
		}
	} else {
		if h, p, ok := strings.Cut(authority, ":"); ok {
			host, port = h, p
			if port == "" {
				return errors.New("empty port")
			}
		}
		if err := checkHost(host); err != nil {
			return err
		}
	}
	if port == "" {
		if !secure {
			return errors.New("s3+http:// needs a port: s3+http://HOST:PORT/BUCKET")
		}
		return nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

// checkHost checks a DNS name or IPv4 address.
func checkHost(host string) error {
	if host == "" {
		return errors.New("no host")
	}
	if len(host) > 253 {
		return fmt.Errorf("host name of %d bytes is longer than 253", len(host))
	}
	numeric := true
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host %q: each dot-separated label must have 1 to 63 characters", host)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q: a label may not start or end with '-'", host)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				numeric = false
			default:
				return fmt.Errorf("host: character %q is not allowed (use a DNS name, an IPv4 address or [IPv6])", c)
			}
		}
	}
	if numeric {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is4() {
			return fmt.Errorf("host %q is not an IPv4 address", host)
		}
	}
	return nil
}

// checkBucket applies S3's bucket naming rules.
func checkBucket(b string) error {
	if b == "" {
		return errors.New("no bucket: want s3://HOST[:PORT]/BUCKET[/PREFIX]")
	}
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket %q: a bucket name has 3 to 63 characters", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return fmt.Errorf("bucket: character %q is not allowed (use lowercase letters, digits, '.' and '-')", c)
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) {
		return fmt.Errorf("bucket %q must start and end with a letter or digit", b)
	}
	if strings.Contains(b, "..") || strings.Contains(b, ".-") || strings.Contains(b, "-.") {
		return fmt.Errorf("bucket %q: '.' may not touch another '.' or a '-'", b)
	}
	if a, err := netip.ParseAddr(b); err == nil && a.Is4() {
		return fmt.Errorf("bucket %q may not be an IP address", b)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// checkPrefix checks the key prefix: segments of [A-Za-z0-9._-], not "."
// or "..", separated by single slashes.
func checkPrefix(p string) error {
	if len(p) > 512 {
		return fmt.Errorf("prefix of %d bytes is longer than 512", len(p))
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" {
			return errors.New("prefix: empty segment (two slashes in a row)")
		}
		if seg == "." || seg == ".." {
			return fmt.Errorf("prefix: segment %q is not allowed", seg)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return fmt.Errorf("prefix: character %q is not allowed (use letters, digits, '.', '-', '_' and '/')", c)
			}
		}
	}
	return nil
}
