package main

import (
	"errors"
	"strings"

	"github.com/cairnbackup/cairn/repo"
)

// flagWords says the library's errors about a setting in the command
// line's words: the library names the setting (a key file, a cache
// directory), the CLI adds the flag and environment variable that give
// it. run applies it to every command's error, in the appliance too.
func flagWords(err error) error {
	if nk, ok := errors.AsType[*repo.NoKeyError](err); ok {
		return reword(err, nk, "no key: give a passphrase with --password-file or CAIRN_PASSWORD_FILE, or a key file with --key-file or CAIRN_KEY_FILE ("+nk.KeyFile+" does not exist)")
	}
	if ce, ok := errors.AsType[*repo.CacheDirError](err); ok {
		return reword(err, ce, ce.Error()+" with --cache-dir")
	}
	return err
}

// reword returns err with the text of inner, which it wraps, replaced by
// text; it still wraps err.
func reword(err, inner error, text string) error {
	return &reworded{msg: strings.Replace(err.Error(), inner.Error(), text, 1), err: err}
}

type reworded struct {
	msg string
	err error
}

func (r *reworded) Error() string { return r.msg }
func (r *reworded) Unwrap() error { return r.err }
