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

// Eraser is a KeyProvider that can destroy an account's key, after which
// nothing wrapped under it opens again (crypto-shredding). A local keyring
// erases the key from its files; AWS KMS disables it and schedules its
// deletion. Erasing a key that does not exist is not an error.
type Eraser interface {
	EraseAccountKey(ctx context.Context, account apiary.AccountID) error
}

// Rotator is a KeyProvider whose account keys have versions: rotating
// moves the account to a new version, which wraps every data key from then
// on; data keys wrapped under older versions keep opening until re-wrapped.
//
// A provider keeps every version until the account is deleted (a key file,
// or a KMS key billed monthly), so it makes at most MaxKeyVersions of
// them and refuses the rotation after that with TooManyVersions.
type Rotator interface {
	// RotateAccountKey makes a new version of account's key and returns it.
	RotateAccountKey(ctx context.Context, account apiary.AccountID) (version int, err error)
	// Rewrap opens a data key of account under encCtx, whatever version
	// wraps it, and returns it wrapped under the newest version.
	Rewrap(ctx context.Context, account apiary.AccountID, wrapped []byte, encCtx Context) ([]byte, error)
}

// Versioned is a Rotator that tells an account's newest key version and
// the version a wrapped key names. The key-encryption-key layer
// (pipeline/encrypt/kek) needs it to make new KEKs under the newest
// version only and to tell a finished rotation from one cut short.
type Versioned interface {
	Rotator
	// CurrentVersion is account's newest key version (1 before any
	// rotation), looked up now, not from a cache: a rotation anywhere that
	// returned before the call is seen. GenerateDataKey and Rewrap calls
	// that start after it returns use this version or a newer one.
	CurrentVersion(ctx context.Context, account apiary.AccountID) (int, error)
	// WrappedVersion is the version of the account key a wrapped key of
	// this provider names; ok is false when wrapped is in none of its
	// formats. It opens nothing.
	WrappedVersion(wrapped []byte) (version int, ok bool)
}

// MaxKeyVersions is the most versions of one account's key a Rotator
// makes: weekly rotations for about two years. Old versions are kept (what
// they wrap keeps opening), so without a bound an admin rotating in a loop
// would pile up keys.
const MaxKeyVersions = 100

// TooManyVersions is the refusal of a rotation past MaxKeyVersions.
func TooManyVersions(account apiary.AccountID) error {
	return apiary.E(apiary.KindConflict, "account %s has %d key versions, the most an account may have: each version is kept until the account is deleted, so the key cannot be rotated again", account, MaxKeyVersions)
}
