package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/awskms"
	"github.com/apiaryhq/apiary/pipeline/encrypt/keyring"
)

// KeysConfig chooses where account keys live (--keys, an entry of
// keyProviders).
type KeysConfig struct {
	Name        string
	KMSEndpoint string
	RootKey     secret // APIARY_ROOT_KEY, environment only; never printed
}

func (c *KeysConfig) register(f *flags) {
	choice(f, &c.Name, "keys", keyProviders, "account keys")
	f.str(&c.KMSEndpoint, "kms-endpoint", "", "KMS endpoint URL (empty: AWS's, from AWS_REGION)")
	c.RootKey = secret(os.Getenv("APIARY_ROOT_KEY"))
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
		return awskms.New(awskms.Config{Client: awskms.NewClient(aws, a.cfg.Keys.KMSEndpoint)})
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
