package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/awskms"
	"github.com/apiaryhq/apiary/pipeline/encrypt/kek"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
)

// KeysConfig chooses where account keys live (--keys, an entry of
// keyProviders).
type KeysConfig struct {
	Name        string
	KMSEndpoint string
	// KMSDeletionDays is the pending window of an erased account's KMS key.
	KMSDeletionDays int
	RootKey         secret // APIARY_ROOT_KEY, environment only; never printed
	// Direct turns the key-encryption keys off: every data key is wrapped
	// by the account key itself (one provider call per document).
	Direct      bool
	KEKMaxAge   time.Duration
	KEKMaxUses  int
	KEKLifetime time.Duration
}

func (c *KeysConfig) register(f *flags) {
	choice(f, &c.Name, "keys", keyProviders, "account keys")
	f.str(&c.KMSEndpoint, "kms-endpoint", "", "KMS endpoint URL (empty: AWS's, from AWS_REGION)")
	f.int(&c.KMSDeletionDays, "kms-deletion-days", 7, "days before KMS deletes an erased account's key (7 to 30; the key is disabled at once)")
	f.bool(&c.Direct, "keys-direct", "wrap each data key with the account key itself, without key-encryption keys (one KMS call per document)")
	f.dur(&c.KEKMaxAge, "kek-max-age", 10*time.Minute, "how long a key-encryption key's plaintext is kept in memory before it is opened again from its record (one KMS call)")
	f.dur(&c.KEKLifetime, "kek-lifetime", 24*time.Hour, "how long one key-encryption key wraps new data keys before a new one is made")
	f.int(&c.KEKMaxUses, "kek-max-uses", 100_000, "how many data keys one key-encryption key wraps before a new one is made")
	c.RootKey = secret(os.Getenv("APIARY_ROOT_KEY"))
}

func (c KeysConfig) validate() error {
	var errs []error
	if c.KMSDeletionDays < 7 || c.KMSDeletionDays > 30 {
		errs = append(errs, fmt.Errorf("--kms-deletion-days must be 7 to 30 (KMS's bounds), got %d", c.KMSDeletionDays))
	}
	if c.KEKMaxAge <= 0 {
		errs = append(errs, fmt.Errorf("--kek-max-age %s: must be positive", c.KEKMaxAge))
	}
	if c.KEKLifetime <= 0 {
		errs = append(errs, fmt.Errorf("--kek-lifetime %s: must be positive", c.KEKLifetime))
	}
	if c.KEKMaxUses <= 0 {
		errs = append(errs, fmt.Errorf("--kek-max-uses %d: must be positive", c.KEKMaxUses))
	}
	return errors.Join(errs...)
}

// openKeys opens the --keys provider, counts the calls made to it (what
// `apiary bench` reports) and, unless --keys-direct, puts key-encryption
// keys (kept in the records) in front of it; then has the record store
// seal its customer-given fields (records.FieldKeys) with keys derived
// from it.
func (a *app) openKeys(ctx context.Context) error {
	base, err := keyProviders.open(ctx, a, a.cfg.Keys.Name)
	if err != nil {
		return err
	}
	if f, ok := base.(forgetter); ok { // the keyring's key files, KMS data keys
		a.forgets.add(f)
	}
	a.keyCalls = kek.Count(base)
	a.keys = a.keyCalls
	if !a.cfg.Keys.Direct {
		p, err := kek.New(a.keyCalls, a.recs, kek.Config{MaxAge: a.cfg.Keys.KEKMaxAge, MaxUses: a.cfg.Keys.KEKMaxUses, Lifetime: a.cfg.Keys.KEKLifetime})
		if err != nil {
			return err
		}
		a.keys = p
		a.forgets.add(p)
	}
	a.recs.SealFields(a.lexicalKeys().Derived("record fields"))
	return nil
}

// keyProviders are the key providers --keys names.
var keyProviders = table[encrypt.KeyProvider]{
	{name: "local", about: "keyring in the data dir", open: func(_ context.Context, a *app) (encrypt.KeyProvider, error) {
		rootKey, err := loadRootKey(a.cfg)
		if err != nil {
			return nil, err
		}
		return keyring.New(keyring.Config{Dir: filepath.Join(a.cfg.DataDir, "keys"), RootKey: rootKey})
	}},
	{name: "awskms", about: "one KMS key per account", open: func(ctx context.Context, a *app) (encrypt.KeyProvider, error) {
		aws, err := a.aws(ctx)
		if err != nil {
			return nil, err
		}
		return awskms.New(awskms.Config{Client: awskms.NewClient(aws, a.cfg.Keys.KMSEndpoint), DeletionDays: a.cfg.Keys.KMSDeletionDays})
	}},
}

// loadRootKey returns APIARY_ROOT_KEY, or the root key file in the data dir
// (created on first use).
func loadRootKey(cfg Config) ([]byte, error) {
	if cfg.Keys.RootKey != "" {
		k, err := keyring.ParseRootKey(string(cfg.Keys.RootKey))
		if err != nil {
			return nil, fmt.Errorf("APIARY_ROOT_KEY: %w", err)
		}
		return k, nil
	}
	return keyring.LoadOrCreateRootKey(filepath.Join(cfg.DataDir, "root.key"))
}
