// Package awskms is the KeyProvider on AWS KMS: one symmetric KMS key per
// account, named by the alias "<AliasPrefix><account>".
//
// CreateAccountKey creates the key (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT,
// tagged account=<id>), turns on yearly rotation and points the alias at
// it. It is idempotent: an existing alias is left as it is, and of
// concurrent creators — in this process or others — exactly one alias wins;
// a loser's unused key is scheduled for deletion.
//
// GenerateDataKey asks KMS for an AES-256 data key under the account's alias
// with the encryption context (encCtx plus "account"). Decrypt sends the
// KMS ciphertext blob with the same context and with KeyId set to the
// account's alias, so that KMS refuses a wrapped key of another account's
// key. A wrapped key is the KMS blob framed with a version byte and a check
// value (see wrap.go) that Decrypt verifies with the unwrapped key, so that
// a wrapped key altered in any byte is refused.
//
// Unwrapped data keys are cached in memory, keyed by the SHA-256 of the
// wrapped key and the context, for at most Cache.MaxAge and Cache.MaxUses
// decrypts, Cache.MaxEntries keys in all; evicted keys are zeroed and
// callers always get their own copy. A key disabled in KMS therefore stops
// opening data keys in this process at the latest MaxAge after it was last
// fetched (at once when disabled through DisableAccountKey here).
//
// Throttling (ThrottlingException, LimitExceededException) is retried with
// jittered exponential backoff, Retry.MaxAttempts times in all, and then
// reported as apiary.KindUnavailable with a RetryAfter hint. A refused
// decrypt — wrong context, another account's key, a tampered wrapped key —
// is apiary.KindPermanent; a disabled key or denied access is
// apiary.KindForbidden; an account without a key apiary.KindNotFound. There
// is never a fallback to plaintext. No key material appears in an error.
package awskms

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/singleflight"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

// orphanDeletionDays is the pending window of a key that lost the race for
// its alias: KMS's minimum.
const orphanDeletionDays = 7

// Config configures a Provider. Only Client is required.
type Config struct {
	// Client talks to KMS (see NewClient). Required.
	Client *kms.Client
	// AliasPrefix starts every account key's alias: "alias/", then at least
	// one more character, ending in "/". Default "alias/apiary/".
	AliasPrefix string
	// Cache bounds the in-memory cache of unwrapped data keys.
	Cache CacheConfig
	// Retry bounds the retries of throttled KMS calls.
	Retry RetryConfig
	// DeletionDays is the pending window of a key EraseAccountKey
	// schedules for deletion: 7 (KMS's shortest, the default) to 30.
	DeletionDays int
}

// CacheConfig bounds the cache of unwrapped data keys.
type CacheConfig struct {
	// MaxAge is how long an unwrapped key is served from memory. Default 5 min.
	MaxAge time.Duration
	// MaxUses is how many decrypts one cached key serves. Default 10,000.
	MaxUses int
	// MaxEntries is how many keys the cache holds; the oldest go first.
	// Default 10,000.
	MaxEntries int
}

// RetryConfig bounds the retries of throttled calls (on top of the
// client's own retries).
type RetryConfig struct {
	// MaxAttempts counts every try of one call, the first included. Default 4.
	MaxAttempts int
	// BaseDelay is the backoff before the first retry; it doubles with each
	// retry (with full jitter). Default 100 ms.
	BaseDelay time.Duration
	// MaxDelay caps one backoff and is the RetryAfter hint once the tries are
	// used up. Default 2 s.
	MaxDelay time.Duration
}

func (c *Config) setDefaults() {
	if c.AliasPrefix == "" {
		c.AliasPrefix = "alias/apiary/"
	}
	if c.Cache.MaxAge == 0 {
		c.Cache.MaxAge = 5 * time.Minute
	}
	if c.Cache.MaxUses == 0 {
		c.Cache.MaxUses = 10_000
	}
	if c.Cache.MaxEntries == 0 {
		c.Cache.MaxEntries = 10_000
	}
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = 4
	}
	if c.DeletionDays == 0 {
		c.DeletionDays = orphanDeletionDays
	}
	if c.Retry.BaseDelay == 0 {
		c.Retry.BaseDelay = 100 * time.Millisecond
	}
	if c.Retry.MaxDelay == 0 {
		c.Retry.MaxDelay = 2 * time.Second
	}
}

// Validate reports every problem with c (after defaults).
func (c *Config) Validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("awskms: Client is required"))
	}
	if !strings.HasPrefix(c.AliasPrefix, "alias/") || !strings.HasSuffix(c.AliasPrefix, "/") ||
		len(c.AliasPrefix) < len("alias/x/") || strings.HasPrefix(c.AliasPrefix, "alias/aws/") ||
		len(c.AliasPrefix)+apiary.MaxAccountIDLen > 256 {
		errs = append(errs, fmt.Errorf("awskms: AliasPrefix %q must look like \"alias/name/\" (not alias/aws/, at most %d characters)",
			c.AliasPrefix, 256-apiary.MaxAccountIDLen))
	}
	if c.DeletionDays < 7 || c.DeletionDays > 30 {
		errs = append(errs, fmt.Errorf("awskms: DeletionDays must be 7 to 30 (KMS's bounds), got %d", c.DeletionDays))
	}
	if c.Cache.MaxAge < 0 || c.Cache.MaxUses < 0 || c.Cache.MaxEntries < 0 {
		errs = append(errs, errors.New("awskms: Cache bounds must not be negative"))
	}
	if c.Retry.MaxAttempts < 1 || c.Retry.MaxAttempts > 20 {
		errs = append(errs, fmt.Errorf("awskms: Retry.MaxAttempts %d is not in 1..20", c.Retry.MaxAttempts))
	}
	if c.Retry.BaseDelay < 0 || c.Retry.MaxDelay < c.Retry.BaseDelay {
		errs = append(errs, errors.New("awskms: Retry delays must satisfy 0 <= BaseDelay <= MaxDelay"))
	}
	return errors.Join(errs...)
}

// NewClient returns a KMS client for awsCfg (region, credentials, HTTP
// client). A non-empty endpoint replaces the regional one: an emulator or a
// VPC endpoint.
func NewClient(awsCfg aws.Config, endpoint string) *kms.Client {
	return kms.NewFromConfig(awsCfg, func(o *kms.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
}

// Provider is the KeyProvider on AWS KMS. Safe for concurrent use.
type Provider struct {
	cfg      Config
	client   *kms.Client
	cache    *keyCache
	creating singleflight.Group
	versions versionCache // rotate.go
}

var _ encrypt.KeyProvider = (*Provider)(nil)

// New returns a Provider. It makes no call to KMS.
func New(cfg Config) (*Provider, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "awskms: config")
	}
	return &Provider{cfg: cfg, client: cfg.Client, cache: newKeyCache(cfg.Cache), versions: versionCache{m: map[apiary.AccountID]cachedVersion{}}}, nil
}

// Alias is the alias of account's key.
func (p *Provider) Alias(account apiary.AccountID) string { return p.cfg.AliasPrefix + string(account) }

// CreateAccountKey makes account's KMS key and alias; when the alias exists
// it does nothing.
func (p *Provider) CreateAccountKey(ctx context.Context, account apiary.AccountID) error {
	if err := account.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// One creation per account at a time in this process; other processes
	// are settled by CreateAlias below.
	_, err, _ := p.creating.Do(string(account), func() (any, error) {
		return nil, p.createAccountKey(context.WithoutCancel(ctx), account)
	})
	if err != nil {
		return err
	}
	return ctx.Err()
}

func (p *Provider) createAccountKey(ctx context.Context, account apiary.AccountID) error {
	alias := p.Alias(account)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err := retry(ctx, p, func(ctx context.Context) (*kms.DescribeKeyOutput, error) {
		return p.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &alias})
	})
	if err == nil {
		return nil
	}
	if !isNotFound(err) {
		return p.errorf(ctx, err, "awskms: create key for %s: describe", account)
	}
	exists, err := p.createKey(ctx, account, alias)
	if err != nil {
		return p.errorf(ctx, err, "awskms: create key for %s", account)
	}
	if !exists {
		p.setVersion(account, 1) // a new account key has no later versions yet
	}
	return nil // made, or another creator's alias won
}

// createKey makes a KMS key for account and points alias at it. exists is
// true when the alias was there already (another creator won): the new key
// is then scheduled for deletion, never used.
func (p *Provider) createKey(ctx context.Context, account apiary.AccountID, alias string) (exists bool, err error) {
	created, err := retry(ctx, p, func(ctx context.Context) (*kms.CreateKeyOutput, error) {
		return p.client.CreateKey(ctx, &kms.CreateKeyInput{
			KeySpec:     types.KeySpecSymmetricDefault,
			KeyUsage:    types.KeyUsageTypeEncryptDecrypt,
			Description: aws.String("Apiary account key: " + string(account)),
			Tags:        []types.Tag{{TagKey: aws.String("account"), TagValue: aws.String(string(account))}},
		})
	})
	if err != nil {
		return false, err
	}
	keyID := aws.ToString(created.KeyMetadata.KeyId)
	if _, err := retry(ctx, p, func(ctx context.Context) (*kms.EnableKeyRotationOutput, error) {
		return p.client.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: &keyID})
	}); err != nil {
		p.scheduleDeletion(ctx, keyID)
		return false, fmt.Errorf("enable rotation: %w", err)
	}
	_, err = retry(ctx, p, func(ctx context.Context) (*kms.CreateAliasOutput, error) {
		return p.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: &alias, TargetKeyId: &keyID})
	})
	if err != nil {
		// Another creator's alias won (AlreadyExists), or the alias could not
		// be made: either way this key is never used.
		p.scheduleDeletion(ctx, keyID)
		var exists *types.AlreadyExistsException
		if errors.As(err, &exists) {
			return true, nil
		}
		return false, fmt.Errorf("alias: %w", err)
	}
	return false, nil
}

// scheduleDeletion retires a key that no alias points at, best effort.
func (p *Provider) scheduleDeletion(ctx context.Context, keyID string) {
	_, _ = p.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{
		KeyId:               &keyID,
		PendingWindowInDays: aws.Int32(orphanDeletionDays),
	})
}

// DisableAccountKey disables every version of account's KMS key, so that no data key of the
// account can be generated or unwrapped any more, and drops the account's
// cached data keys in this Provider. Other processes stop unwrapping once
// their cached copies age out (Cache.MaxAge). For operators and tests.
func (p *Provider) DisableAccountKey(ctx context.Context, account apiary.AccountID) error {
	if err := account.Validate(); err != nil {
		return err
	}
	aliases, err := p.VersionAliases(ctx, account)
	if err != nil {
		return err
	}
	if len(aliases) == 0 {
		aliases = []string{p.Alias(account)} // none: describe answers NotFound
	}
	for _, alias := range aliases {
		if _, err := p.disable(ctx, account, alias); err != nil {
			return p.errorf(ctx, err, "awskms: disable key of %s", account)
		}
	}
	return nil
}

// disable describes one version of account's key by its alias and disables it unless it
// is pending deletion already, dropping the account's cached data keys
// before and after (a decrypt that raced the disable may have cached
// one). It returns the key's metadata, or the KMS error unclassified.
func (p *Provider) disable(ctx context.Context, account apiary.AccountID, alias string) (*types.KeyMetadata, error) {
	p.cache.forget(account)
	defer p.cache.forget(account)
	desc, err := retry(ctx, p, func(ctx context.Context) (*kms.DescribeKeyOutput, error) {
		return p.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &alias})
	})
	if err != nil {
		return nil, fmt.Errorf("describe: %w", err)
	}
	if desc.KeyMetadata.KeyState == types.KeyStatePendingDeletion {
		return desc.KeyMetadata, nil
	}
	if _, err := retry(ctx, p, func(ctx context.Context) (*kms.DisableKeyOutput, error) {
		return p.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: desc.KeyMetadata.KeyId})
	}); err != nil {
		return nil, err
	}
	return desc.KeyMetadata, nil
}

var _ encrypt.Eraser = (*Provider)(nil)

// EraseAccountKey crypto-shreds account: it disables every version of the
// account's KMS key
// (nothing wrapped under it opens from then on), schedules its deletion
// after Config.DeletionDays, removes the alias and drops the account's
// cached data keys in this Provider (other processes drop theirs when told,
// by Forget, or else age them out within Cache.MaxAge). An account without a key is not an error.
func (p *Provider) EraseAccountKey(ctx context.Context, account apiary.AccountID) error {
	if err := account.Validate(); err != nil {
		return err
	}
	aliases, err := p.VersionAliases(ctx, account)
	if err != nil {
		return err
	}
	// Newest first: an erasure cut short leaves versions 1..n, which
	// VersionAliases finds again.
	for i := len(aliases) - 1; i >= 0; i-- {
		if err := p.eraseVersion(ctx, account, aliases[i]); err != nil {
			return err
		}
	}
	// A rotation racing this erasure may have made a version (again) after
	// the listing, at most one above it: look at each, then above while
	// found (a rotation that makes one after this finds version 1 gone
	// and erases its own).
	found := false
	for v := 2; v <= len(aliases)+1 || found; v++ {
		alias := p.versionAlias(account, v)
		if found, err = p.aliasExists(ctx, alias); err != nil {
			return p.errorf(ctx, err, "awskms: erase key of %s", account)
		}
		if found {
			if err := p.eraseVersion(ctx, account, alias); err != nil {
				return err
			}
		}
	}
	return nil
}

// Forget drops account's cached data keys (wiped) and its known key
// version: an account another process deleted is forgotten here at once,
// rather than when its keys age out of the cache (Cache.MaxAge).
func (p *Provider) Forget(account apiary.AccountID) {
	p.cache.forget(account)
	p.versions.mu.Lock()
	delete(p.versions.m, account)
	p.versions.mu.Unlock()
}

// eraseVersion disables the key behind alias, schedules its deletion and
// removes the alias.
func (p *Provider) eraseVersion(ctx context.Context, account apiary.AccountID, alias string) error {
	meta, err := p.disable(ctx, account, alias)
	switch {
	case isNotFound(err):
		return nil
	case err != nil && !p.pendingDeletion(ctx, alias):
		return p.errorf(ctx, err, "awskms: erase key of %s", account)
	}
	if err == nil && meta.KeyState != types.KeyStatePendingDeletion {
		if _, err := retry(ctx, p, func(ctx context.Context) (*kms.ScheduleKeyDeletionOutput, error) {
			return p.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{
				KeyId: meta.KeyId, PendingWindowInDays: aws.Int32(int32(p.cfg.DeletionDays)),
			})
		}); err != nil && !p.pendingDeletion(ctx, alias) {
			return p.errorf(ctx, err, "awskms: erase key of %s: schedule deletion", account)
		}
	}
	if _, err := retry(ctx, p, func(ctx context.Context) (*kms.DeleteAliasOutput, error) {
		return p.client.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: &alias})
	}); err != nil && !isNotFound(err) {
		return p.errorf(ctx, err, "awskms: erase key of %s: delete alias", account)
	}
	return nil
}

// pendingDeletion reports whether the key behind alias is gone or pending
// deletion: a concurrent erasure of the same version (a rotation erasing
// the version it made for an account being erased) got there first.
func (p *Provider) pendingDeletion(ctx context.Context, alias string) bool {
	desc, err := p.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &alias})
	return isNotFound(err) || err == nil && desc.KeyMetadata.KeyState == types.KeyStatePendingDeletion
}

// Purge drops and zeroes every cached data key.
func (p *Provider) Purge() { p.cache.purge() }

// GenerateDataKey returns a fresh AES-256 data key from KMS, wrapped by
// account's key under encCtx with "account" set to account.
func (p *Provider) GenerateDataKey(ctx context.Context, account apiary.AccountID, encCtx encrypt.Context) (encrypt.DataKey, error) {
	if err := account.Validate(); err != nil {
		return encrypt.DataKey{}, err
	}
	version, err := p.currentVersion(ctx, account)
	if err != nil {
		return encrypt.DataKey{}, err
	}
	alias := p.versionAlias(account, version)
	full := withAccount(encCtx, account)
	out, err := retry(ctx, p, func(ctx context.Context) (*kms.GenerateDataKeyOutput, error) {
		return p.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
			KeyId:             &alias,
			KeySpec:           types.DataKeySpecAes256,
			EncryptionContext: full,
		})
	})
	if err != nil {
		return encrypt.DataKey{}, p.errorf(ctx, err, "awskms: generate data key for %s", account)
	}
	if len(out.Plaintext) != encrypt.KeySize || len(out.CiphertextBlob) == 0 {
		encrypt.Wipe(out.Plaintext)
		return encrypt.DataKey{}, apiary.E(apiary.KindUnavailable, "awskms: generate data key for %s: KMS returned a %d-byte key", account, len(out.Plaintext))
	}
	wrapped := seal(version, out.Plaintext, out.CiphertextBlob, encrypt.Context(full).Canonical())
	return encrypt.DataKey{Plaintext: out.Plaintext, Wrapped: wrapped}, nil
}

// Decrypt unwraps a data key made by GenerateDataKey for the same account
// and context, from the cache when it holds it. The caller owns (and should
// wipe) the returned slice.
func (p *Provider) Decrypt(ctx context.Context, account apiary.AccountID, wrapped []byte, encCtx encrypt.Context) ([]byte, error) {
	if err := account.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	full := withAccount(encCtx, account)
	canon := encrypt.Context(full).Canonical()
	id := newCacheID(wrapped, canon)
	if key := p.cache.get(id); key != nil {
		return key, nil
	}
	gen := p.cache.generation() // a Forget from here on: the key is not cached
	version, blob, sum, ok := split(wrapped)
	if !ok {
		return nil, apiary.E(apiary.KindPermanent, "awskms: decrypt for %s: not a wrapped data key", account)
	}
	alias := p.versionAlias(account, version)
	out, err := retry(ctx, p, func(ctx context.Context) (*kms.DecryptOutput, error) {
		return p.client.Decrypt(ctx, &kms.DecryptInput{
			KeyId:             &alias,
			CiphertextBlob:    blob,
			EncryptionContext: full,
		})
	})
	if err != nil && version >= 2 && isNotFound(err) {
		// No alias for the version the wrapped key names: an altered
		// version, unless the account has no key at all.
		if ok, aerr := p.aliasExists(ctx, p.Alias(account)); aerr == nil && ok {
			return nil, apiary.E(apiary.KindPermanent, "awskms: decrypt for %s: refused: no key version %d", account, version)
		}
	}
	if err != nil {
		return nil, p.errorf(ctx, err, "awskms: decrypt for %s", account)
	}
	if len(out.Plaintext) != encrypt.KeySize || !verify(out.Plaintext, blob, canon, sum) {
		encrypt.Wipe(out.Plaintext)
		return nil, apiary.E(apiary.KindPermanent, "awskms: decrypt for %s: refused: wrapped key altered", account)
	}
	p.cache.putSince(gen, id, account, out.Plaintext)
	return out.Plaintext, nil
}

// withAccount copies c with "account" set to account.
func withAccount(c encrypt.Context, account apiary.AccountID) map[string]string {
	out := make(map[string]string, len(c)+1)
	for k, v := range c {
		out[k] = v
	}
	out["account"] = string(account)
	return out
}

// retry runs call, retrying throttled attempts with jittered exponential
// backoff, at most Retry.MaxAttempts tries in all.
func retry[T any](ctx context.Context, p *Provider, call func(context.Context) (T, error)) (T, error) {
	delay := p.cfg.Retry.BaseDelay
	for attempt := 1; ; attempt++ {
		out, err := call(ctx)
		if err == nil || !throttled(err) || attempt >= p.cfg.Retry.MaxAttempts || ctx.Err() != nil {
			return out, err
		}
		wait := time.Duration(0)
		if delay > 0 {
			wait = rand.N(delay) + 1
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return out, err
		case <-t.C:
		}
		delay = min(2*delay, p.cfg.Retry.MaxDelay)
	}
}

func throttled(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode() {
	case "ThrottlingException", "LimitExceededException", "Throttling", "TooManyRequestsException":
		return true
	}
	return false
}

func (p *Provider) errorf(ctx context.Context, err error, format string, args ...any) error {
	return classify(ctx, err, p.cfg.Retry.MaxDelay, format, args...)
}

func isNotFound(err error) bool {
	var nf *types.NotFoundException
	return errors.As(err, &nf)
}

// classify translates a KMS error into the root package's kinds; a throttled
// call gets the hint retryAfter.
func classify(ctx context.Context, err error, retryAfter time.Duration, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", msg, cerr)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", msg, err)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "ThrottlingException", "LimitExceededException", "Throttling", "TooManyRequestsException":
			return &apiary.Error{Kind: apiary.KindUnavailable, Msg: msg + ": throttled", Err: err, RetryAfter: retryAfter}
		case "NotFoundException":
			return apiary.Wrap(err, apiary.KindNotFound, "%s: no account key", msg)
		case "InvalidCiphertextException", "IncorrectKeyException", "InvalidKeyUsageException":
			return apiary.Wrap(err, apiary.KindPermanent, "%s: refused", msg)
		case "DisabledException", "KMSInvalidStateException", "AccessDeniedException", "AccessDenied":
			return apiary.Wrap(err, apiary.KindForbidden, "%s: key disabled or access denied", msg)
		case "UnrecognizedClientException", "InvalidClientTokenId", "IncompleteSignature",
			"MissingAuthenticationToken", "ExpiredTokenException", "SignatureDoesNotMatch":
			// Apiary's own AWS credentials, not the caller's: an outage for
			// the caller, a configuration problem for the operator.
			return apiary.Wrap(err, apiary.KindUnavailable, "%s: the service's AWS credentials were refused", msg)
		case "AlreadyExistsException", "ConflictException":
			return apiary.Wrap(err, apiary.KindConflict, "%s", msg)
		case "ValidationException", "InvalidAliasNameException", "InvalidArnException", "TagException",
			"SerializationException":
			return apiary.Wrap(err, apiary.KindInvalid, "%s", msg)
		}
	}
	// KMSInternalException, DependencyTimeoutException, KeyUnavailableException,
	// 5xx, timeouts, refused connections: the caller retries.
	return apiary.Wrap(err, apiary.KindUnavailable, "%s", msg)
}
