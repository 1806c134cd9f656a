package wire

import (
	"fmt"

	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/pack"
	"github.com/klauspost/compress/zstd"
)

// Blobs as stored.
//
// From version 2 on, the server may answer a LoadBlob with a
// [StoredBlob]: the payload as the repository stores it, zstd-compressed
// or raw, which the server only authenticated (its envelope's AEAD) and
// neither decompressed nor re-hashed. That spares the appliance the
// decompression and the hash of every data blob a restore --from loads,
// and SSH encrypts (and the node decrypts) the compressed bytes only. The
// node trusts none of it: [StoredBlob.Plaintext] decompresses, bounded
// by RawLength (at most [blob.MaxSize], checked by [DecodeStoredBlob]
// before anything is decompressed), and re-hashes against the ID the
// node asked for, exactly as the server checks a [PutBlob].

// Plaintext returns the blob's plaintext once it hashes to h.ID: the
// payload itself when it is raw, else the payload decompressed into a new
// buffer of RawLength bytes. A payload that does not decompress, or
// decompresses to any other length than RawLength, or whose plaintext
// does not hash to h.ID, gives an error naming h that matches
// [blob.ErrCorrupt]. A zstd frame whose header declares another size
// than RawLength is refused before anything is decompressed or
// allocated; a decompression never produces more than [blob.MaxSize]
// bytes, whatever the payload claims.
func (m *StoredBlob) Plaintext(h blob.Handle) ([]byte, error) {
	if m.RawLength > blob.MaxSize {
		return nil, fmt.Errorf("wire: blob %s from the server: raw length %d exceeds %d: %w", h, m.RawLength, blob.MaxSize, blob.ErrCorrupt)
	}
	if m.Compression == CompressionRaw {
		if len(m.Payload) != int(m.RawLength) {
			return nil, fmt.Errorf("wire: blob %s from the server: raw payload of %d bytes, raw length %d: %w", h, len(m.Payload), m.RawLength, blob.ErrCorrupt)
		}
		if blob.Hash(m.Payload) != h.ID {
			return nil, fmt.Errorf("wire: blob %s from the server does not match its id: %w", h, blob.ErrCorrupt)
		}
		return m.Payload, nil
	}
	if m.Compression == CompressionZstd {
		// A frame that declares its size (cairn's always do) and
		// declares another than RawLength is refused before anything
		// is allocated for it.
		var zh zstd.Header
		if zh.Decode(m.Payload) == nil && zh.HasFCS && zh.FrameContentSize != uint64(m.RawLength) {
			return nil, fmt.Errorf("wire: from the server: blob %s: zstd frame declares %d bytes, raw length %d: %w", h, zh.FrameContentSize, m.RawLength, blob.ErrCorrupt)
		}
	}
	out, err := pack.VerifyPayload(nil, h, pack.Compression(m.Compression), int(m.RawLength), m.Payload)
	if err != nil {
		return nil, fmt.Errorf("wire: from the server: %w", err)
	}
	return out, nil
}

// blobReply returns the verified plaintext of blob h from the server's
// answer to a LoadBlob: a [Blob] (plaintext) or, from version 2 on, a
// [StoredBlob]. The plaintext may alias body.
func (c *Client) blobReply(r reply, h blob.Handle) ([]byte, error) {
	switch {
	case r.t == TypeBlob:
		m, err := DecodeBlob(r.body)
		if err != nil {
			return nil, err
		}
		if blob.Hash(m.Data) != h.ID {
			return nil, fmt.Errorf("wire: blob %s from the server does not match its id: %w", h, blob.ErrCorrupt)
		}
		return m.Data, nil
	case r.t == TypeStoredBlob && c.welcome.Version >= 2:
		m, err := DecodeStoredBlob(r.body)
		if err != nil {
			return nil, err
		}
		return m.Plaintext(h)
	}
	return nil, fmt.Errorf("wire: expected blob, got %s: %w", r.t, ErrProtocol)
}
