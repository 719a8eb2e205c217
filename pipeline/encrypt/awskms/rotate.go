package awskms

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

// Key versions: RotateAccountKey makes a new KMS key behind the alias
// <prefix><account>/v<n> (n = 2, 3, …; version 1 is the key of
// CreateAccountKey, <prefix><account>). The newest version wraps new data
// keys; a wrapped key names its version (wrap.go), so older ones keep
// opening until re-wrapped (Rewrap). KMS's own yearly rotation of each key
// stays on beside this.

var _ encrypt.Versioned = (*Provider)(nil)

// versionTTL is how long GenerateDataKey and Rewrap trust this process's
// knowledge of an account's newest version before looking for a newer one
// (made by another process): a data key wrapped directly (no KEKs) may be
// wrapped by the previous version for up to this long after a rotation
// elsewhere. CurrentVersion never trusts it; the KEK layer asks it before
// making a KEK, so no KEK is made under an outdated version.
const versionTTL = time.Minute

type cachedVersion struct {
	version int
	at      time.Time
}

type versionCache struct {
	mu sync.Mutex
	m  map[apiary.AccountID]cachedVersion
}

// versionAlias is the alias of version of account's key.
func (p *Provider) versionAlias(account apiary.AccountID, version int) string {
	if version <= 1 {
		return p.Alias(account)
	}
	return p.Alias(account) + "/v" + strconv.Itoa(version)
}

func (p *Provider) aliasExists(ctx context.Context, alias string) (bool, error) {
	_, err := retry(ctx, p, func(ctx context.Context) (*kms.DescribeKeyOutput, error) {
		return p.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(alias)})
	})
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, err
}

// currentVersion is account's newest key version: the cached one when
// younger than versionTTL, else found by looking for the aliases after it.
func (p *Provider) currentVersion(ctx context.Context, account apiary.AccountID) (int, error) {
	return p.lookUpVersion(ctx, account, versionTTL)
}

// CurrentVersion is account's newest key version, looked up in KMS now:
// the version this process knew, then the aliases after it (one
// DescribeKey when there is none). GenerateDataKey and Rewrap use it (or
// a newer one) from then on.
func (p *Provider) CurrentVersion(ctx context.Context, account apiary.AccountID) (int, error) {
	if err := account.Validate(); err != nil {
		return 0, err
	}
	return p.lookUpVersion(ctx, account, 0)
}

// lookUpVersion is account's newest key version: the cached one when
// younger than maxAge, else found by looking for the aliases after it.
// Versions are only ever added, so the cached one is where the look starts.
func (p *Provider) lookUpVersion(ctx context.Context, account apiary.AccountID, maxAge time.Duration) (int, error) {
	p.versions.mu.Lock()
	c, ok := p.versions.m[account]
	p.versions.mu.Unlock()
	if ok && time.Since(c.at) < maxAge {
		return c.version, nil
	}
	v := max(c.version, 1)
	for {
		exists, err := p.aliasExists(ctx, p.versionAlias(account, v+1))
		if err != nil {
			return 0, p.errorf(ctx, err, "awskms: key versions of %s", account)
		}
		if !exists {
			break
		}
		v++
	}
	p.setVersion(account, v)
	return v, nil
}

// WrappedVersion is the version of the account key a data key wrapped by
// this provider names.
func (p *Provider) WrappedVersion(wrapped []byte) (int, bool) {
	v, _, _, ok := split(wrapped)
	return v, ok
}

func (p *Provider) setVersion(account apiary.AccountID, v int) {
	p.versions.mu.Lock()
	defer p.versions.mu.Unlock()
	if c := p.versions.m[account]; c.version <= v {
		p.versions.m[account] = cachedVersion{version: v, at: time.Now()}
	}
}

// RotateAccountKey makes a new KMS key for account behind the alias of the
// next version and returns that version. Concurrent rotations each make a
// version of their own.
func (p *Provider) RotateAccountKey(ctx context.Context, account apiary.AccountID) (int, error) {
	if err := account.Validate(); err != nil {
		return 0, err
	}
	if ok, err := p.aliasExists(ctx, p.Alias(account)); err != nil {
		return 0, p.errorf(ctx, err, "awskms: rotate key of %s", account)
	} else if !ok {
		return 0, apiary.E(apiary.KindNotFound, "awskms: rotate key of %s: no account key", account)
	}
	p.versions.mu.Lock()
	delete(p.versions.m, account) // look for versions made elsewhere
	p.versions.mu.Unlock()
	for {
		v, err := p.currentVersion(ctx, account)
		if err != nil {
			return 0, err
		}
		if v >= encrypt.MaxKeyVersions {
			return 0, encrypt.TooManyVersions(account)
		}
		exists, err := p.createKey(ctx, account, p.versionAlias(account, v+1))
		if err != nil {
			return 0, p.errorf(ctx, err, "awskms: rotate key of %s", account)
		}
		if !exists {
			if ok, err := p.aliasExists(ctx, p.Alias(account)); err == nil && !ok {
				// Erased meanwhile: the new version must not outlive the
				// account (EraseAccountKey's last look may have passed).
				if err := p.eraseVersion(ctx, account, p.versionAlias(account, v+1)); err != nil {
					return 0, err
				}
				return 0, apiary.E(apiary.KindNotFound, "awskms: rotate key of %s: the key was erased", account)
			}
			p.setVersion(account, v+1)
			return v + 1, nil
		}
		p.setVersion(account, v+1) // another rotation took v+1: make the one after
	}
}

// Rewrap opens a data key of account under encCtx, whatever version wraps
// it, and wraps it again (KMS Encrypt) under the newest version.
func (p *Provider) Rewrap(ctx context.Context, account apiary.AccountID, wrapped []byte, encCtx encrypt.Context) ([]byte, error) {
	dk, err := p.Decrypt(ctx, account, wrapped, encCtx)
	if err != nil {
		return nil, err
	}
	defer encrypt.Wipe(dk)
	v, err := p.currentVersion(ctx, account)
	if err != nil {
		return nil, err
	}
	full := withAccount(encCtx, account)
	out, err := retry(ctx, p, func(ctx context.Context) (*kms.EncryptOutput, error) {
		return p.client.Encrypt(ctx, &kms.EncryptInput{
			KeyId:             aws.String(p.versionAlias(account, v)),
			Plaintext:         dk,
			EncryptionContext: full,
		})
	})
	if err != nil {
		return nil, p.errorf(ctx, err, "awskms: rewrap for %s", account)
	}
	return seal(v, dk, out.CiphertextBlob, encrypt.Context(full).Canonical()), nil
}

// VersionAliases lists the aliases of every version of account's key, the
// first one included (for erasure: every one of them goes).
func (p *Provider) VersionAliases(ctx context.Context, account apiary.AccountID) ([]string, error) {
	if err := account.Validate(); err != nil {
		return nil, err
	}
	var out []string
	for v := 1; ; v++ {
		alias := p.versionAlias(account, v)
		exists, err := p.aliasExists(ctx, alias)
		if err != nil {
			return nil, p.errorf(ctx, err, "awskms: key versions of %s", account)
		}
		if !exists {
			return out, nil
		}
		out = append(out, alias)
		if v > maxKeyVersion {
			return nil, fmt.Errorf("awskms: key versions of %s: more than %d", account, maxKeyVersion)
		}
	}
}
