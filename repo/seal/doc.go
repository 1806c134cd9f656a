// Package seal is cairn's cryptography: authenticated encryption of
// everything a repository stores, the keys it derives, and the wrapping
// of its master key.
//
// # Sealing
//
// A [Key] seals a message as nonce (96 random bits) ‖ AES-256-GCM
// ciphertext ‖ tag, with associated data that is authenticated but not
// stored, so a message opens only for the purpose it was sealed for (a
// blob of one type and ID, a pack header, the config). [Key.Open] of a
// damaged message, or one sealed with another key or associated data,
// is an error wrapping both [ErrAuth] and blob.ErrCorrupt.
//
// # Keys
//
// A repository has one [MasterKey] (256 random bits). Working keys are
// derived from it with HKDF-SHA256, one per purpose ([MasterKey.Derive]):
// the data key that seals every object ([MasterKey.DataKey]) and the
// chunker's seed, so chunk boundaries reveal nothing to someone who sees
// only sizes. The purposes are part of the format.
//
// # Wrapping
//
// The master key is stored only wrapped ([Wrapped], JSON in keys/):
// sealed with a key-encryption key from a passphrase (argon2id, [Wrap])
// or a random 32-byte secret kept in a key file outside the repository
// ([WrapWithSecret]). [DecodeWrapped] bounds the stored form and
// [Wrapped.Unwrap] bounds the argon2id costs a stored key may ask for,
// so a hostile key cannot make opening allocate or spin without bound;
// a wrong credential is [ErrWrongKey].
//
// # Concurrency
//
// A [Key] is safe for concurrent use; the package has no other state.
package seal
