package storage

import (
	"strings"
	"testing"
)

func TestParseS3URL(t *testing.T) {
	for _, c := range []struct {
		in  string
		loc S3Location
	}{
		{"s3://s3.example.net/backups", S3Location{Endpoint: "s3.example.net", Secure: true, Bucket: "backups"}},
		{"s3://s3.example.net:9000/backups/", S3Location{Endpoint: "s3.example.net:9000", Secure: true, Bucket: "backups"}},
		{"s3://s3.example.net/backups/cairn/box-1", S3Location{Endpoint: "s3.example.net", Secure: true, Bucket: "backups", Prefix: "cairn/box-1"}},
		{"s3://s3.example.net/backups/cairn/", S3Location{Endpoint: "s3.example.net", Secure: true, Bucket: "backups", Prefix: "cairn"}},
		{"s3+http://127.0.0.1:8333/b.k-1", S3Location{Endpoint: "127.0.0.1:8333", Bucket: "b.k-1"}},
		{"s3+http://[::1]:8333/bkt/A_b.c", S3Location{Endpoint: "[::1]:8333", Bucket: "bkt", Prefix: "A_b.c"}},
		{"s3://[2001:db8::1]/bkt", S3Location{Endpoint: "[2001:db8::1]", Secure: true, Bucket: "bkt"}},
		{"s3+http://Store-1.lan:65535/bkt", S3Location{Endpoint: "Store-1.lan:65535", Bucket: "bkt"}},
	} {
		loc, err := ParseS3URL(c.in)
		if err != nil || loc != c.loc {
			t.Errorf("ParseS3URL(%q) = %+v, %v; want %+v", c.in, loc, err, c.loc)
			continue
		}
		if again, err := ParseS3URL(loc.String()); err != nil || again != loc {
			t.Errorf("ParseS3URL(%q.String() = %q) = %+v, %v", c.in, loc.String(), again, err)
		}
	}
}

func TestParseS3URLRefuses(t *testing.T) {
	const credentials = "s3 URL: credentials do not belong in the URL (they would show in process lists and logs); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or use a credentials file"
	const form = "s3 URL: want s3://HOST[:PORT]/BUCKET[/PREFIX] (HTTPS) or s3+http://HOST:PORT/BUCKET[/PREFIX] (plain HTTP)"
	for _, c := range []struct{ in, err string }{
		{"", form},
		{"/srv/repo", form},
		{"https://s3.example.net/bkt", form},
		{"S3://s3.example.net/bkt", form},
		{"s3:/s3.example.net/bkt", form},
		{"s3://AKIAEXAMPLE:s3cr3t@s3.example.net/bkt", credentials},
		{"s3://AKIAEXAMPLE:s3/cr3t@s3.example.net/bkt", credentials},
		{"s3+http://user@127.0.0.1:1/bkt", credentials},
		{"s3://s3.example.net/bkt?region=x", `s3 URL: '?' at byte 24: queries and fragments are not allowed`},
		{"s3://s3.example.net/bkt#x", `s3 URL: '#' at byte 24: queries and fragments are not allowed`},
		{"s3:///bkt", "s3 URL: no host"},
		{"s3://s3.example.net", "s3 URL: no bucket: want s3://HOST[:PORT]/BUCKET[/PREFIX]"},
		{"s3://s3.example.net/", "s3 URL: no bucket: want s3://HOST[:PORT]/BUCKET[/PREFIX]"},
		{"s3+http://127.0.0.1/bkt", "s3 URL: s3+http:// needs a port: s3+http://HOST:PORT/BUCKET"},
		{"s3://h:/bkt", "s3 URL: empty port"},
		{"s3://h:0/bkt", `s3 URL: port "0" is not a number from 1 to 65535`},
		{"s3://h:65536/bkt", `s3 URL: port "65536" is not a number from 1 to 65535`},
		{"s3://h:080/bkt", `s3 URL: port "080" is not a number from 1 to 65535`},
		{"s3://h:+80/bkt", `s3 URL: port "+80" is not a number from 1 to 65535`},
		{"s3://h:8:0/bkt", `s3 URL: port "8:0" is not a number from 1 to 65535`},
		{"s3://h_1/bkt", `s3 URL: host: character '_' is not allowed (use a DNS name, an IPv4 address or [IPv6])`},
		{"s3://-h/bkt", `s3 URL: host "-h": a label may not start or end with '-'`},
		{"s3://h..net/bkt", `s3 URL: host "h..net": each dot-separated label must have 1 to 63 characters`},
		{"s3://999.1.1.1/bkt", `s3 URL: host "999.1.1.1" is not an IPv4 address`},
		{"s3://[::1/bkt", "s3 URL: IPv6 address without closing ']'"},
		{"s3://[::1]x/bkt", `s3 URL: unexpected "x" after the IPv6 address`},
		{"s3://[1.2.3.4]/bkt", "s3 URL: host [1.2.3.4] is not an IPv6 address (zones are not supported)"},
		{"s3://[fe80::1%25eth0]/bkt", "s3 URL: host [fe80::1%25eth0] is not an IPv6 address (zones are not supported)"},
		{"s3://[::1]:/bkt", "s3 URL: empty port"},
		{"s3://h/ab", `s3 URL: bucket "ab": a bucket name has 3 to 63 characters`},
		{"s3://h/" + strings.Repeat("a", 64), `s3 URL: bucket "` + strings.Repeat("a", 64) + `": a bucket name has 3 to 63 characters`},
		{"s3://h/Backups", `s3 URL: bucket: character 'B' is not allowed (use lowercase letters, digits, '.' and '-')`},
		{"s3://h/b_k", `s3 URL: bucket: character '_' is not allowed (use lowercase letters, digits, '.' and '-')`},
		{"s3://h/-bk", `s3 URL: bucket "-bk" must start and end with a letter or digit`},
		{"s3://h/b..k", `s3 URL: bucket "b..k": '.' may not touch another '.' or a '-'`},
		{"s3://h/192.168.1.1", `s3 URL: bucket "192.168.1.1" may not be an IP address`},
		{"s3://h/bkt//p", "s3 URL: prefix: empty segment (two slashes in a row)"},
		{"s3://h/bkt/p//", "s3 URL: prefix: empty segment (two slashes in a row)"},
		{"s3://h/bkt/../p", `s3 URL: prefix: segment ".." is not allowed`},
		{"s3://h/bkt/./p", `s3 URL: prefix: segment "." is not allowed`},
		{"s3://h/bkt/a%2Fb", `s3 URL: prefix: character '%' is not allowed (use letters, digits, '.', '-', '_' and '/')`},
		{"s3://h/bkt/a b", `s3 URL: prefix: character ' ' is not allowed (use letters, digits, '.', '-', '_' and '/')`},
		{"s3://h/bkt/" + strings.Repeat("p", 513), "s3 URL: prefix of 513 bytes is longer than 512"},
		{"s3://h/bkt/" + strings.Repeat("p", 1014), "s3 URL: 1025 bytes is longer than the limit of 1024"},
	} {
		loc, err := ParseS3URL(c.in)
		if err == nil || err.Error() != c.err {
			t.Errorf("ParseS3URL(%q) = %+v, %v\nwant error %s", c.in, loc, err, c.err)
		}
	}
}

// FuzzParseS3URL: no input panics; an accepted URL prints as one that
// parses back to the same location; a URL holding '@' is refused with
// the one message that repeats nothing of it.
func FuzzParseS3URL(f *testing.F) {
	for _, s := range []string{"s3://s3.example.net/backups/cairn", "s3+http://127.0.0.1:8333/bkt/",
		"s3+http://[::1]:1/bkt/a/b", "s3://k:s@h/bkt", "s3://h:99999/b", "s3://h/b?x#y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc, err := ParseS3URL(s)
		if err != nil {
			if strings.Contains(s, "@") && !strings.HasPrefix(err.Error(), "s3 URL: credentials do not belong") &&
				!strings.HasPrefix(err.Error(), "s3 URL: want s3://") && !strings.Contains(err.Error(), "longer than the limit") {
				t.Fatalf("ParseS3URL(%q): the error may repeat credentials: %v", s, err)
			}
			return
		}
		if strings.Contains(s, "@") {
			t.Fatalf("ParseS3URL(%q) accepted a URL with '@'", s)
		}
		again, err := ParseS3URL(loc.String())
		if err != nil || again != loc {
			t.Fatalf("ParseS3URL(%q) = %+v, printed %q, parsed back as %+v, %v", s, loc, loc.String(), again, err)
		}
	})
}
