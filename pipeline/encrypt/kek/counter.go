package kek

import (
	"context"
	"sync/atomic"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

// Counter is a KeyProvider that counts the calls made to the provider it
// wraps: what `apiary bench` reports as KMS calls per document. It forwards
// erasure and rotation; a Provider sees through it to the key versions of
// the provider it wraps (encrypt.Versioned).
type Counter struct {
	base    encrypt.KeyProvider
	calls   atomic.Int64
	lookups atomic.Int64
}

var (
	_ encrypt.KeyProvider = (*Counter)(nil)
	_ encrypt.Eraser      = (*Counter)(nil)
	_ encrypt.Rotator     = (*Counter)(nil)
)

// Count wraps base with a Counter.
func Count(base encrypt.KeyProvider) *Counter { return &Counter{base: base} }

// Calls is how many GenerateDataKey and Decrypt calls reached the wrapped
// provider.
func (c *Counter) Calls() int64 { return c.calls.Load() }

// Lookups is how many key-version lookups (encrypt.Versioned's
// CurrentVersion: one DescribeKey or more with awskms) reached the
// wrapped provider: a Provider makes two for each KEK it makes, and one
// per rotation.
func (c *Counter) Lookups() int64 { return c.lookups.Load() }

// CreateAccountKey forwards (not counted: once per account).
func (c *Counter) CreateAccountKey(ctx context.Context, acc apiary.AccountID) error {
	return c.base.CreateAccountKey(ctx, acc)
}

// GenerateDataKey forwards and counts.
func (c *Counter) GenerateDataKey(ctx context.Context, acc apiary.AccountID, encCtx encrypt.Context) (encrypt.DataKey, error) {
	c.calls.Add(1)
	return c.base.GenerateDataKey(ctx, acc, encCtx)
}

// Decrypt forwards and counts.
func (c *Counter) Decrypt(ctx context.Context, acc apiary.AccountID, wrapped []byte, encCtx encrypt.Context) ([]byte, error) {
	c.calls.Add(1)
	return c.base.Decrypt(ctx, acc, wrapped, encCtx)
}

// EraseAccountKey forwards to the wrapped provider, which must be an
// encrypt.Eraser.
func (c *Counter) EraseAccountKey(ctx context.Context, acc apiary.AccountID) error {
	er, err := asEraser(c.base, acc)
	if err != nil {
		return err
	}
	return er.EraseAccountKey(ctx, acc)
}

// RotateAccountKey forwards to the wrapped provider, which must be an
// encrypt.Rotator (not counted: once per rotation).
func (c *Counter) RotateAccountKey(ctx context.Context, acc apiary.AccountID) (int, error) {
	r, err := asRotator(c.base, acc)
	if err != nil {
		return 0, err
	}
	return r.RotateAccountKey(ctx, acc)
}

// Rewrap forwards and counts.
func (c *Counter) Rewrap(ctx context.Context, acc apiary.AccountID, wrapped []byte, encCtx encrypt.Context) ([]byte, error) {
	r, err := asRotator(c.base, acc)
	if err != nil {
		return nil, err
	}
	c.calls.Add(1)
	return r.Rewrap(ctx, acc, wrapped, encCtx)
}

// countedVersions is the key versions of the provider a Counter wraps,
// the lookups counted (WrappedVersion opens nothing and calls no one).
type countedVersions struct {
	encrypt.Versioned
	c *Counter
}

func (v countedVersions) CurrentVersion(ctx context.Context, acc apiary.AccountID) (int, error) {
	v.c.lookups.Add(1)
	return v.Versioned.CurrentVersion(ctx, acc)
}
