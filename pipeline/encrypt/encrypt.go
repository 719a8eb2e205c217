// Package encrypt is envelope encryption for Apiary: each document (and each
// staged upload) gets a fresh 256-bit data key; the data key encrypts with
// AES-256-GCM; the account's own key (a local keyring entry or an AWS KMS key)
// wraps the data key. The encryption context binds the account and the
// document: a wrapped key taken to another account or document does not open.
//
// KeyProvider adapters pass the conformance suite in encrypttest.
package encrypt

import (
	"context"

	"github.com/apiaryhq/apiary"
)

// Context is the encryption context bound to a wrapped data key. It always
// holds "account"; callers add "document" or "job".
type Context map[string]string

// DataKey is a fresh data key: Plaintext to use and then wipe, Wrapped to store.
type DataKey struct {
	Plaintext []byte
	Wrapped   []byte
}

// KeyProvider holds one key per account and wraps data keys with it.
type KeyProvider interface {
	// CreateAccountKey makes the account's key; calling it again is a no-op.
	CreateAccountKey(ctx context.Context, account apiary.AccountID) error
	// GenerateDataKey returns a new 256-bit data key wrapped by the account's
	// key under encCtx.
	GenerateDataKey(ctx context.Context, account apiary.AccountID, encCtx Context) (DataKey, error)
	// Decrypt unwraps a data key. A wrong account or context fails with an
	// error of kind Permanent or Forbidden, never with a wrong key.
	Decrypt(ctx context.Context, account apiary.AccountID, wrapped []byte, encCtx Context) ([]byte, error)
}
