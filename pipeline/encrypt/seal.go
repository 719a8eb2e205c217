package encrypt

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/apiaryhq/apiary"
)

// Sizes of the sealed format.
const (
	// KeySize is the size of every key Seal takes: AES-256.
	KeySize = 32
	// NonceSize is the size of the random GCM nonce stored in front of the
	// ciphertext.
	NonceSize = 12
	// Overhead is how many bytes Seal adds to a plaintext: the version byte,
	// the nonce and the GCM tag.
	Overhead = 1 + NonceSize + 16

	sealVersion     byte = 1
	envelopeVersion byte = 1
	maxWrappedLen        = 1 << 16
)

// errAuth is the only error Open gives for a sealed value that does not
// open: it says nothing about why, so that it leaks nothing.
func errAuth() error { return apiary.E(apiary.KindPermanent, "decrypt: authentication failed") }

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, apiary.E(apiary.KindInvalid, "encrypt: key must be %d bytes", KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("encrypt: new cipher: %w", err)
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plaintext with a 32-byte key using AES-256-GCM, binding aad
// as associated data. The output is version (1 byte) | nonce (12 random
// bytes) | ciphertext+tag. A random 96-bit nonce per call is safe for far more
// messages per key than Apiary ever seals with one data key.
func Seal(key, plaintext, aad []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+NonceSize, 1+NonceSize+len(plaintext)+aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1 : 1+NonceSize]); err != nil {
		return nil, fmt.Errorf("encrypt: read nonce: %w", err)
	}
	return aead.Seal(out, out[1:1+NonceSize], plaintext, aad), nil
}

// Open decrypts what Seal produced with the same key and aad. Any failure —
// wrong key, wrong aad, tampering, truncation, unknown version — is the same
// error of kind Permanent, "decrypt: authentication failed".
func Open(key, sealed, aad []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+NonceSize+aead.Overhead() || sealed[0] != sealVersion {
		return nil, errAuth()
	}
	pt, err := aead.Open(nil, sealed[1:1+NonceSize], sealed[1+NonceSize:], aad)
	if err != nil {
		return nil, errAuth()
	}
	return pt, nil
}

// AAD encodes parts as associated data unambiguously: each part is prefixed
// with its length (uvarint), so ("ab","c") and ("a","bc") differ.
func AAD(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += binary.MaxVarintLen64 + len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

// Canonical encodes the context unambiguously and independently of map
// order: its keys sorted, each key and value length-prefixed as in AAD.
func (c Context) Canonical() []byte {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		parts = append(parts, k, c[k])
	}
	return AAD(parts...)
}

// Wipe overwrites b with zeros. Call it on a plaintext key once done with it.
func Wipe(b []byte) { clear(b) }

// SealEnvelope encrypts plaintext under a fresh data key from kp for
// account, bound to encCtx (which gets "account" set to account). The output
// is self-contained: version (1 byte) | len(wrapped) (uvarint) | wrapped key
// | Seal(dataKey, plaintext, encCtx.Canonical()). The plaintext data key is
// wiped before SealEnvelope returns.
func SealEnvelope(ctx context.Context, kp KeyProvider, account apiary.AccountID, encCtx Context, plaintext []byte) ([]byte, error) {
	encCtx = withAccount(encCtx, account)
	dk, err := kp.GenerateDataKey(ctx, account, encCtx)
	if err != nil {
		return nil, fmt.Errorf("encrypt: seal envelope: %w", err)
	}
	defer Wipe(dk.Plaintext)
	if len(dk.Wrapped) == 0 || len(dk.Wrapped) > maxWrappedLen {
		return nil, fmt.Errorf("encrypt: seal envelope: wrapped key of %d bytes", len(dk.Wrapped))
	}
	sealed, err := Seal(dk.Plaintext, plaintext, encCtx.Canonical())
	if err != nil {
		return nil, fmt.Errorf("encrypt: seal envelope: %w", err)
	}
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(dk.Wrapped)+len(sealed))
	out = append(out, envelopeVersion)
	out = binary.AppendUvarint(out, uint64(len(dk.Wrapped)))
	out = append(out, dk.Wrapped...)
	return append(out, sealed...), nil
}

// OpenEnvelope reverses SealEnvelope. The account and encCtx must be the ones
// it was sealed with; otherwise, or when env is damaged, it fails with an
// error of kind Permanent (or the key provider's kind, e.g. NotFound for an
// account without a key). The length must be a varint in its shortest form
// (last byte not 0), so that an envelope has one encoding.
func OpenEnvelope(ctx context.Context, kp KeyProvider, account apiary.AccountID, encCtx Context, env []byte) ([]byte, error) {
	encCtx = withAccount(encCtx, account)
	if len(env) < 2 || env[0] != envelopeVersion {
		return nil, errAuth()
	}
	n, w := binary.Uvarint(env[1:])
	if w <= 0 || w > 1 && env[w] == 0 || n == 0 || n > maxWrappedLen || uint64(len(env)-1-w) < n {
		return nil, errAuth()
	}
	wrapped := env[1+w : 1+w+int(n)]
	sealed := env[1+w+int(n):]
	dk, err := kp.Decrypt(ctx, account, wrapped, encCtx)
	if err != nil {
		return nil, fmt.Errorf("encrypt: open envelope: %w", err)
	}
	defer Wipe(dk)
	return Open(dk, sealed, encCtx.Canonical())
}

// withAccount returns a copy of c with "account" set to account, so that the
// caller's map is never modified.
func withAccount(c Context, account apiary.AccountID) Context {
	out := make(Context, len(c)+1)
	for k, v := range c {
		out[k] = v
	}
	out["account"] = string(account)
	return out
}
