package storage

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const (
	testAccessKey = "AKIAIOSFODNN7EXAMPLE"
	testSecret    = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

func writeCredentials(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s3.env")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadS3Credentials(t *testing.T) {
	for _, c := range []struct {
		name, content string
		want          S3Credentials
	}{
		{"plain", "AWS_ACCESS_KEY_ID=" + testAccessKey + "\nAWS_SECRET_ACCESS_KEY=" + testSecret + "\n",
			S3Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecret}},
		{"comments, blanks, CRLF, export, quotes, token",
			"# cairn's S3 keys\r\n\r\nexport AWS_ACCESS_KEY_ID='" + testAccessKey + "'\r\n  AWS_SECRET_ACCESS_KEY = \"" + testSecret + "\"\r\nAWS_SESSION_TOKEN=tok/en+=\r\n",
			S3Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecret, SessionToken: "tok/en+="}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := LoadS3Credentials(writeCredentials(t, c.content, 0o600))
			if err != nil || got != c.want {
				t.Errorf("got %#v (%s / %s / %s), %v", got, got.AccessKeyID, got.SecretAccessKey, got.SessionToken, err)
			}
		})
	}
	if _, err := LoadS3Credentials(writeCredentials(t, "AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n", 0o400)); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestLoadS3CredentialsRefuses(t *testing.T) {
	const good = "AWS_ACCESS_KEY_ID=" + testAccessKey + "\nAWS_SECRET_ACCESS_KEY=" + testSecret + "\n"
	for _, c := range []struct {
		name, content string
		mode          os.FileMode
		err           string // after "S3 credentials file PATH"
	}{
		{"group-readable", good, 0o640, " has mode 0640, open to group or others: make it 0600 (chmod 600 PATH)"},
		{"world-readable", good, 0o644, " has mode 0644, open to group or others: make it 0600 (chmod 600 PATH)"},
		{"group-writable", good, 0o620, " has mode 0620, open to group or others: make it 0600 (chmod 600 PATH)"},
		{"no equals sign", testSecret + "\n", 0o600, ": line 1: want NAME=VALUE"},
		{"unknown name", "# x\n" + testSecret[:10] + "=" + testSecret[10:] + "\n", 0o600, ": line 2: unknown name (want AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN)"},
		{"region", "AWS_REGION=eu-west-1\n" + good, 0o600, ": line 1: unknown name (want AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN)"},
		{"twice", good + "AWS_SECRET_ACCESS_KEY=" + testSecret + "x\n", 0o600, ": line 3: AWS_SECRET_ACCESS_KEY is set twice"},
		{"empty", "AWS_ACCESS_KEY_ID=\n", 0o600, ": line 1: AWS_ACCESS_KEY_ID is empty"},
		{"empty quotes", "AWS_ACCESS_KEY_ID=''\n", 0o600, ": line 1: AWS_ACCESS_KEY_ID is empty"},
		{"space inside", "AWS_ACCESS_KEY_ID=" + testAccessKey + "\nAWS_SECRET_ACCESS_KEY=" + testSecret + " # mine\n", 0o600,
			": line 2: AWS_SECRET_ACCESS_KEY has a space, quote, backslash, control or non-ASCII character at byte 41"},
		{"unbalanced quote", "AWS_SECRET_ACCESS_KEY=\"" + testSecret + "\n", 0o600,
			": line 1: AWS_SECRET_ACCESS_KEY has a space, quote, backslash, control or non-ASCII character at byte 1"},
		{"no secret", "AWS_ACCESS_KEY_ID=" + testAccessKey + "\n", 0o600, ": AWS_SECRET_ACCESS_KEY not set"},
		{"nothing", "# empty\n", 0o600, ": AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set"},
		{"too large", good + strings.Repeat("#\n", 32<<10), 0o600, " is larger than 65536 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeCredentials(t, c.content, c.mode)
			_, err := LoadS3Credentials(path)
			want := "S3 credentials file " + path + strings.ReplaceAll(c.err, "PATH", path)
			if err == nil || err.Error() != want {
				t.Fatalf("got %v\nwant %s", err, want)
			}
			for _, secret := range []string{testSecret, testSecret[:10], testSecret[10:], testAccessKey} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows %q", secret)
				}
			}
		})
	}
	dir := t.TempDir()
	if _, err := LoadS3Credentials(dir); err == nil || err.Error() != "S3 credentials file "+dir+" is not a regular file" {
		t.Errorf("a directory: %v", err)
	}
}

func TestS3CredentialsFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, found, err := S3CredentialsFromEnv(env(map[string]string{EnvAccessKeyID: testAccessKey, EnvSecretAccessKey: testSecret, EnvSessionToken: "tok"}))
	if err != nil || !found || c != (S3Credentials{testAccessKey, testSecret, "tok"}) {
		t.Errorf("got %#v, %v, %v", c, found, err)
	}
	if _, found, err := S3CredentialsFromEnv(env(nil)); found || err != nil {
		t.Errorf("empty environment: found %v, %v", found, err)
	}
	_, found, err = S3CredentialsFromEnv(env(map[string]string{EnvAccessKeyID: testAccessKey}))
	if !found || err == nil || err.Error() != "S3 credentials from the environment: AWS_SECRET_ACCESS_KEY not set" {
		t.Errorf("access key only: %v, %v", found, err)
	}
	_, _, err = S3CredentialsFromEnv(env(map[string]string{EnvAccessKeyID: testAccessKey, EnvSecretAccessKey: "a b" + testSecret}))
	if err == nil || err.Error() != "S3 credentials from the environment: AWS_SECRET_ACCESS_KEY has a space, quote, backslash, control or non-ASCII character at byte 2" {
		t.Errorf("secret with a space: %v", err)
	}
}

// Printing or logging credentials by mistake shows none of them.
func TestS3CredentialsHidden(t *testing.T) {
	c := S3Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecret, SessionToken: "SESSIONTOKEN"}
	var log bytes.Buffer
	slog.New(slog.NewJSONHandler(&log, nil)).Info("x", "creds", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprint(&c), log.String()} {
		for _, secret := range []string{testAccessKey, testSecret, "SESSIONTOKEN"} {
			if strings.Contains(s, secret) {
				t.Errorf("%q shows %s", s, secret)
			}
		}
	}
	// The backend's errors hide the secret and token even where the
	// store, or a wrapped error, repeats them.
	e := &s3Error{op: "put", object: "s3://h/b/k", err: errors.New("echo " + testSecret + " and SESSIONTOKEN"), secrets: []string{testSecret, "SESSIONTOKEN"}}
	if got, want := e.Error(), "storage: put s3://h/b/k: echo [hidden] and [hidden]"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// The messages of parseS3Credentials come from a fixed set: whatever the
// file holds, no error repeats any of it.
var credentialErrors = regexp.MustCompile(`^(line \d+: (want NAME=VALUE|unknown name \(want AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN\)|` +
	`AWS_[A-Z_]+ is set twice|AWS_[A-Z_]+ is empty|AWS_[A-Z_]+ has \d+ bytes, more than 4096|` +
	`AWS_[A-Z_]+ has a space, quote, backslash, control or non-ASCII character at byte \d+)|` +
	`(AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) not set)$`)

func FuzzS3Credentials(f *testing.F) {
	for _, s := range []string{
		"AWS_ACCESS_KEY_ID=" + testAccessKey + "\nAWS_SECRET_ACCESS_KEY=" + testSecret + "\n",
		"export AWS_ACCESS_KEY_ID='a'\r\nAWS_SECRET_ACCESS_KEY=\"b\"\nAWS_SESSION_TOKEN=c\n",
		"# c\n\nAWS_REGION=x\n", "=\n", "AWS_ACCESS_KEY_ID=a b\n", "AWS_ACCESS_KEY_ID='\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseS3Credentials(data)
		if err != nil {
			if !credentialErrors.MatchString(err.Error()) {
				t.Fatalf("error outside the fixed set: %q", err)
			}
			return
		}
		if c.Check() != nil {
			t.Fatalf("accepted credentials that fail Check: %v", c.Check())
		}
	})
}
