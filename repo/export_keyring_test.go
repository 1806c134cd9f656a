package repo

import "context"

// InterruptKeyFile leaves what a key change killed after storing a new
// key file's wrapped key, before the file reached path: a temporary key
// file beside path and its wrapped key in keys/. It returns both.
func (k *Keyring) InterruptKeyFile(ctx context.Context, path string) (tmp, key string, err error) {
	// The file is never given its name.
	kf, err := k.newKeyFile(ctx, path, nil, func(t, _ string) error { tmp = t; return nil })
	if err != nil {
		return "", "", err
	}
	return tmp, kf.Key, nil
}
