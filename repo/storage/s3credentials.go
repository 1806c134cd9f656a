package storage

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// S3Credentials are the keys an [S3] backend signs its requests with.
// Neither [S3Credentials.String] nor [S3Credentials.LogValue] shows any of
// them, so printing or logging the struct by mistake leaks nothing.
type S3Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string // optional: temporary credentials
}

// The environment variables, and the names in a credentials file.
const (
	EnvAccessKeyID     = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken    = "AWS_SESSION_TOKEN"
)

// maxCredentialsFile bounds the credentials file; maxCredential one value.
const (
	maxCredentialsFile = 64 << 10
	maxCredential      = 4096
)

// String describes the credentials without showing them.
func (c S3Credentials) String() string {
	if c.SessionToken != "" {
		return "S3 credentials (access key, secret and session token hidden)"
	}
	return "S3 credentials (access key and secret hidden)"
}

// GoString is String, for %#v.
func (c S3Credentials) GoString() string { return c.String() }

// LogValue implements [slog.LogValuer]: the credentials log as String.
func (c S3Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Check reports whether the access key and secret are set and every value
// is printable ASCII without spaces or quotes, of at most 4096 bytes. Its
// errors name the variable, never its value.
func (c S3Credentials) Check() error {
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		var missing []string
		if c.AccessKeyID == "" {
			missing = append(missing, EnvAccessKeyID)
		}
		if c.SecretAccessKey == "" {
			missing = append(missing, EnvSecretAccessKey)
		}
		return fmt.Errorf("%s not set", strings.Join(missing, " and "))
	}
	for _, v := range []struct{ name, value string }{
		{EnvAccessKeyID, c.AccessKeyID}, {EnvSecretAccessKey, c.SecretAccessKey}, {EnvSessionToken, c.SessionToken},
	} {
		if err := checkCredential(v.value); err != nil {
			return fmt.Errorf("%s %w", v.name, err)
		}
	}
	return nil
}

// checkCredential checks one value; its error never contains the value.
func checkCredential(v string) error {
	if len(v) > maxCredential {
		return fmt.Errorf("has %d bytes, more than %d", len(v), maxCredential)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c > '~' || c == '"' || c == '\'' || c == '\\' {
			return fmt.Errorf("has a space, quote, backslash, control or non-ASCII character at byte %d", i+1)
		}
	}
	return nil
}

// S3CredentialsFromEnv reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN with getenv (os.Getenv outside tests). found is false
// when neither the access key nor the secret is set; then err is nil.
func S3CredentialsFromEnv(getenv func(string) string) (c S3Credentials, found bool, err error) {
	c = S3Credentials{
		AccessKeyID:     getenv(EnvAccessKeyID),
		SecretAccessKey: getenv(EnvSecretAccessKey),
		SessionToken:    getenv(EnvSessionToken),
	}
	if c.AccessKeyID == "" && c.SecretAccessKey == "" {
		return S3Credentials{}, false, nil
	}
	if err := c.Check(); err != nil {
		return S3Credentials{}, true, fmt.Errorf("S3 credentials from the environment: %w", err)
	}
	return c, true, nil
}

// LoadS3Credentials reads an env-style credentials file: lines
// NAME=VALUE with NAME one of AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
// and AWS_SESSION_TOKEN, optionally after "export ", VALUE optionally in
// one pair of single or double quotes (nothing is expanded or escaped);
// blank lines and lines starting with '#' are skipped. The file must be
// a regular file of at most 64 KiB that neither group nor others may
// read or write (mode 0600 or stricter). Errors name the file and line
// but never repeat what a line holds.
func LoadS3Credentials(path string) (S3Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return S3Credentials{}, fmt.Errorf("S3 credentials: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return S3Credentials{}, fmt.Errorf("S3 credentials: %w", err)
	}
	if !st.Mode().IsRegular() {
		return S3Credentials{}, fmt.Errorf("S3 credentials file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return S3Credentials{}, fmt.Errorf("S3 credentials file %s has mode %04o, open to group or others: make it 0600 (chmod 600 %s)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialsFile+1))
	if err != nil {
		return S3Credentials{}, fmt.Errorf("S3 credentials file %s: %w", path, err)
	}
	if len(data) > maxCredentialsFile {
		return S3Credentials{}, fmt.Errorf("S3 credentials file %s is larger than %d bytes", path, maxCredentialsFile)
	}
	c, err := parseS3Credentials(data)
	if err != nil {
		return S3Credentials{}, fmt.Errorf("S3 credentials file %s: %w", path, err)
	}
	return c, nil
}

// parseS3Credentials parses the file format of [LoadS3Credentials].
func parseS3Credentials(data []byte) (S3Credentials, error) {
	var c S3Credentials
	seen := map[string]bool{}
	n := 0
	for line := range strings.Lines(string(data)) {
		n++
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return c, fmt.Errorf("line %d: want NAME=VALUE", n)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		var dst *string
		switch name {
		case EnvAccessKeyID:
			dst = &c.AccessKeyID
		case EnvSecretAccessKey:
			dst = &c.SecretAccessKey
		case EnvSessionToken:
			dst = &c.SessionToken
		default:
			return c, fmt.Errorf("line %d: unknown name (want %s, %s or %s)", n, EnvAccessKeyID, EnvSecretAccessKey, EnvSessionToken)
		}
		if seen[name] {
			return c, fmt.Errorf("line %d: %s is set twice", n, name)
		}
		seen[name] = true
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		if value == "" {
			return c, fmt.Errorf("line %d: %s is empty", n, name)
		}
		if err := checkCredential(value); err != nil {
			return c, fmt.Errorf("line %d: %s %w", n, name, err)
		}
		*dst = value
	}
	if err := c.Check(); err != nil {
		return S3Credentials{}, err
	}
	return c, nil
}
