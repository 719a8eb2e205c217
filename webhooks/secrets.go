package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage/records"
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// secretBytes is the size of a signing key.
const secretBytes = 32

// NewSecret returns a fresh signing secret: "whsec_" + base64 of 32 random
// bytes. Show it once; store it only sealed.
func NewSecret() (string, error) {
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("webhooks: new secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
}

// ParseSecret returns the HMAC key of secret: the base64-decoded part after
// "whsec_". Its error never quotes the secret.
func ParseSecret(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) == 0 {
		return nil, apiary.E(apiary.KindInvalid, "webhooks: malformed signing secret")
	}
	return key, nil
}

// DefaultSecretID is the "webhook" value of the encryption context of an
// account's default secret (webhook ids start with "wh_", so it never
// names an endpoint).
const DefaultSecretID = "default"

func secretContext(webhookID string) encrypt.Context {
	return encrypt.Context{"webhook": webhookID}
}

// SealSecret seals secret with account's key, bound to (account, webhookID).
func SealSecret(ctx context.Context, keys encrypt.KeyProvider, account apiary.AccountID, webhookID, secret string) ([]byte, error) {
	b := []byte(secret)
	defer clear(b)
	sealed, err := encrypt.SealEnvelope(ctx, keys, account, secretContext(webhookID), b)
	if err != nil {
		return nil, fmt.Errorf("webhooks: seal secret of %s: %w", webhookID, err)
	}
	return sealed, nil
}

// OpenSecret reverses SealSecret.
func OpenSecret(ctx context.Context, keys encrypt.KeyProvider, account apiary.AccountID, webhookID string, sealed []byte) (string, error) {
	b, err := encrypt.OpenEnvelope(ctx, keys, account, secretContext(webhookID), sealed)
	if err != nil {
		return "", fmt.Errorf("webhooks: open secret of %s: %w", webhookID, err)
	}
	defer clear(b)
	return string(b), nil
}

// NewSecrets makes a fresh secret for webhookID and returns it in the
// clear (to show once) and sealed (to store).
func NewSecrets(ctx context.Context, keys encrypt.KeyProvider, account apiary.AccountID, webhookID string) (string, records.Secrets, error) {
	secret, err := NewSecret()
	if err != nil {
		return "", records.Secrets{}, err
	}
	sealed, err := SealSecret(ctx, keys, account, webhookID, secret)
	if err != nil {
		return "", records.Secrets{}, err
	}
	return secret, records.Secrets{Sealed: sealed}, nil
}

// Rotate returns cur with a fresh secret in front and the current one kept
// as previous until now+grace (no previous when grace is not positive).
func Rotate(ctx context.Context, keys encrypt.KeyProvider, account apiary.AccountID, webhookID string, cur records.Secrets, grace time.Duration, now time.Time) (string, records.Secrets, error) {
	secret, next, err := NewSecrets(ctx, keys, account, webhookID)
	if err != nil {
		return "", records.Secrets{}, err
	}
	if grace > 0 {
		until := now.Add(grace).UTC()
		next.PreviousSealed, next.PreviousExpiresAt = cur.Sealed, &until
	}
	return secret, next, nil
}

// LiveSecrets opens the secrets that sign at now: the current one, and the
// previous one during a rotation's grace period.
func LiveSecrets(ctx context.Context, keys encrypt.KeyProvider, account apiary.AccountID, webhookID string, s records.Secrets, now time.Time) ([]string, error) {
	cur, err := OpenSecret(ctx, keys, account, webhookID, s.Sealed)
	if err != nil {
		return nil, err
	}
	out := []string{cur}
	if s.PreviousLive(now) {
		prev, err := OpenSecret(ctx, keys, account, webhookID, s.PreviousSealed)
		if err != nil {
			return nil, err
		}
		out = append(out, prev)
	}
	return out, nil
}

// DefaultSecrets is where accounts' default secrets are kept
// (records.WebhookStore).
type DefaultSecrets interface {
	DefaultSecret(ctx context.Context, account apiary.AccountID) (records.DefaultSecret, error)
	CreateDefaultSecret(ctx context.Context, d records.DefaultSecret) error
}

// EnsureDefaultSecret returns account's default secret, creating it
// (unrevealed when revealed is false) on first use. created says whether
// this call made it, and secret is then its plaintext.
func EnsureDefaultSecret(ctx context.Context, recs DefaultSecrets, keys encrypt.KeyProvider, account apiary.AccountID, revealed bool) (d records.DefaultSecret, secret string, created bool, err error) {
	d, err = recs.DefaultSecret(ctx, account)
	if err == nil || !errors.Is(err, apiary.ErrNotFound) {
		return d, "", false, err
	}
	secret, sealed, err := NewSecrets(ctx, keys, account, DefaultSecretID)
	if err != nil {
		return d, "", false, err
	}
	now := time.Now().UTC()
	d = records.DefaultSecret{Account: account, Secrets: sealed, Revealed: revealed, CreatedAt: now, UpdatedAt: now}
	switch err := recs.CreateDefaultSecret(ctx, d); {
	case err == nil:
		return d, secret, true, nil
	case errors.Is(err, apiary.ErrConflict): // created concurrently
		d, err = recs.DefaultSecret(ctx, account)
		return d, "", false, err
	default:
		return d, "", false, err
	}
}
