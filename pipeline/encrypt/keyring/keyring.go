// Package keyring is the local KeyProvider: one random 256-bit key per
// account, each stored in its own file sealed by a root key.
//
// Layout: <Dir>/<account>.key holds Seal(rootKey, accountKey,
// "apiary-keyring-v1|<account>"), mode 0600, in a directory of mode 0700.
// RotateAccountKey adds versions: <Dir>/<account>.v<n>.key, sealed with
// "apiary-keyring-v1|<account>|v<n>"; the newest wraps new data keys, and a
// data key wrapped by version n ≥ 2 carries n in front (see wrap).
// Files are created with O_EXCL, so that concurrent creators — in this
// process or another — end with exactly one key. Unsealed account keys are
// cached in memory for the life of the Keyring.
//
// Data keys are 32 random bytes wrapped with Seal(accountKey, dataKey,
// Canonical(encCtx + account)); a wrapped key presented under another
// account or another context fails to open with an error of kind Permanent.
//
// Nothing in this package logs or returns a key in an error.
package keyring

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

var (
	_ encrypt.KeyProvider = (*Keyring)(nil)
	_ encrypt.Versioned   = (*Keyring)(nil)
)

// Config configures a Keyring.
type Config struct {
	// Dir holds one file per account key. Required; created (0700) if missing.
	Dir string
	// RootKey seals the account keys: exactly 32 bytes. Required. Keep it out
	// of Dir (see LoadOrCreateRootKey and ParseRootKey).
	RootKey []byte
}

// String never shows the root key.
func (c Config) String() string {
	return fmt.Sprintf("keyring.Config{Dir: %q, RootKey: [redacted]}", c.Dir)
}

func (c *Config) setDefaults() {}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("keyring: Dir is required"))
	}
	if len(c.RootKey) != encrypt.KeySize {
		errs = append(errs, fmt.Errorf("keyring: RootKey must be %d bytes, got %d", encrypt.KeySize, len(c.RootKey)))
	}
	return errors.Join(errs...)
}

// Keyring is the local KeyProvider. Safe for concurrent use.
type Keyring struct {
	dir  string
	root []byte

	mu      sync.Mutex
	cache   map[versioned][]byte
	current map[apiary.AccountID]int // the account's newest key version, once looked up
}

// versioned names one version of an account's key.
type versioned struct {
	account apiary.AccountID
	version int
}

// New opens (creating if needed) the keyring in cfg.Dir.
func New(cfg Config) (*Keyring, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "keyring: config")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyring: create dir: %w", err)
	}
	return &Keyring{
		dir:     cfg.Dir,
		root:    append([]byte(nil), cfg.RootKey...),
		cache:   make(map[versioned][]byte),
		current: make(map[apiary.AccountID]int),
	}, nil
}

// path is the file of version of account's key: version 1 (the key made
// by CreateAccountKey) is <account>.key, later ones <account>.v<n>.key.
func (k *Keyring) path(account apiary.AccountID, version int) string {
	if version <= 1 {
		return filepath.Join(k.dir, string(account)+".key")
	}
	return filepath.Join(k.dir, fmt.Sprintf("%s.v%d.key", account, version))
}

func fileAAD(account apiary.AccountID, version int) []byte {
	if version <= 1 {
		return []byte("apiary-keyring-v1|" + string(account))
	}
	return []byte(fmt.Sprintf("apiary-keyring-v1|%s|v%d", account, version))
}

// CreateAccountKey makes account's key if it has none; otherwise it does
// nothing. Concurrent calls end with one key.
func (k *Keyring) CreateAccountKey(ctx context.Context, account apiary.AccountID) error {
	if err := account.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := k.accountKey(account, 1); err == nil {
		return nil
	} else if apiary.KindOf(err) != apiary.KindNotFound {
		return err
	}
	if err := k.createVersion(account, 1); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("keyring: create account key %s: %w", account, err)
	}
	return nil // made, or another creator won and its key stands
}

// createVersion writes a new random key as version of account's key;
// fs.ErrExist when that version exists.
func (k *Keyring) createVersion(account apiary.AccountID, version int) error {
	key := make([]byte, encrypt.KeySize)
	defer encrypt.Wipe(key)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	sealed, err := encrypt.Seal(k.root, key, fileAAD(account, version))
	if err != nil {
		return err
	}
	return writeExclusive(k.path(account, version), sealed)
}

// currentVersion is the newest version of account's key: the highest n
// whose file exists (1 when only <account>.key does). Versions are only
// ever added, so a cached answer is refreshed by a look for the next one.
func (k *Keyring) currentVersion(account apiary.AccountID) (int, error) {
	k.mu.Lock()
	v := max(k.current[account], 1)
	k.mu.Unlock()
	for {
		_, err := os.Stat(k.path(account, v+1))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("keyring: key versions of %s: %w", account, err)
		}
		v++
	}
	k.mu.Lock()
	k.current[account] = max(k.current[account], v)
	k.mu.Unlock()
	return v, nil
}

// CurrentVersion is account's newest key version, looked up in the
// directory now (1 before any rotation).
func (k *Keyring) CurrentVersion(ctx context.Context, account apiary.AccountID) (int, error) {
	if err := account.Validate(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return k.currentVersion(account)
}

// WrappedVersion is the version of the account key a data key wrapped by
// this keyring names; ok is false unless Seal's output follows it.
func (k *Keyring) WrappedVersion(wrapped []byte) (int, bool) {
	v, sealed, ok := unwrapVersion(wrapped)
	if !ok || len(sealed) < encrypt.Overhead || sealed[0] != 1 { // Seal's version byte
		return 0, false
	}
	return v, true
}

// RotateAccountKey makes a new version of account's key, which wraps every
// data key from then on; data keys wrapped under older versions keep
// opening (Rewrap moves them). It returns the new version.
func (k *Keyring) RotateAccountKey(ctx context.Context, account apiary.AccountID) (int, error) {
	if err := account.Validate(); err != nil {
		return 0, err
	}
	if _, err := k.accountKey(account, 1); err != nil {
		return 0, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		v, err := k.currentVersion(account)
		if err != nil {
			return 0, err
		}
		if v >= encrypt.MaxKeyVersions {
			return 0, encrypt.TooManyVersions(account)
		}
		err = k.createVersion(account, v+1)
		if errors.Is(err, fs.ErrExist) {
			continue // a concurrent rotation made v+1: make the one after
		}
		if err != nil {
			return 0, fmt.Errorf("keyring: rotate account key %s: %w", account, err)
		}
		if _, err := os.Stat(k.path(account, 1)); errors.Is(err, fs.ErrNotExist) {
			// Erased meanwhile: the new version must not outlive the
			// account (EraseAccountKey's last look may have passed).
			_ = os.Remove(k.path(account, v+1))
			return 0, apiary.E(apiary.KindNotFound, "keyring: rotate account key %s: the key was erased", account)
		}
		k.mu.Lock()
		k.current[account] = max(k.current[account], v+1)
		k.mu.Unlock()
		return v + 1, nil
	}
}

// Rewrap opens a data key of account under encCtx, whatever version wraps
// it, and wraps it again under the newest version.
func (k *Keyring) Rewrap(ctx context.Context, account apiary.AccountID, wrapped []byte, encCtx encrypt.Context) ([]byte, error) {
	dk, err := k.Decrypt(ctx, account, wrapped, encCtx)
	if err != nil {
		return nil, err
	}
	defer encrypt.Wipe(dk)
	v, err := k.currentVersion(account)
	if err != nil {
		return nil, err
	}
	return k.wrap(account, v, dk, encCtx)
}

// Versions lists the versions of account's key that exist, oldest first
// (for erasure: every one of them goes).
func (k *Keyring) Versions(account apiary.AccountID) ([]int, error) {
	if err := account.Validate(); err != nil {
		return nil, err
	}
	var out []int
	if _, err := os.Stat(k.path(account, 1)); err == nil {
		out = append(out, 1)
	}
	v, err := k.currentVersion(account)
	if err != nil {
		return nil, err
	}
	for n := 2; n <= v; n++ {
		out = append(out, n)
	}
	return out, nil
}

var _ encrypt.Eraser = (*Keyring)(nil)

// Forget drops account's cached key versions from memory, wiped; the next
// use reads them again from their files (and fails once they are erased).
func (k *Keyring) Forget(account apiary.AccountID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forget(account)
}

// forget is Forget with k.mu held.
func (k *Keyring) forget(account apiary.AccountID) {
	for id, key := range k.cache {
		if id.account == account {
			encrypt.Wipe(key)
			delete(k.cache, id)
		}
	}
	delete(k.current, account)
}

// EraseAccountKey removes the files of every version of account's key and
// their cached copies (wiped):
// nothing wrapped under it opens again, in this process or from a later
// copy of the directory. A copy taken before still holds the sealed key
// file, which opens with the root key: keep backups of the keyring apart
// from those of the data, or the root key apart from both. Other
// processes on the same directory keep their cached copy until told to
// Forget it (or until they restart). Erasing a key that does not exist is
// not an error.
func (k *Keyring) EraseAccountKey(ctx context.Context, account apiary.AccountID) error {
	if err := account.Validate(); err != nil {
		return err
	}
	v, err := k.currentVersion(account)
	if err != nil {
		return fmt.Errorf("keyring: erase account key %s: %w", account, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forget(account)
	// Newest first: a crash midway leaves version 1, and erasing again
	// finds the versions above it that remain.
	for n := v; n >= 1; n-- {
		if err := os.Remove(k.path(account, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("keyring: erase account key %s v%d: %w", account, n, err)
		}
	}
	// A rotation racing this erasure may have made a version after v:
	// remove every version file left (a rotation that makes one after
	// this finds version 1 gone and removes its own).
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return fmt.Errorf("keyring: erase account key %s: %w", account, err)
	}
	for _, e := range entries {
		if name := e.Name(); strings.HasPrefix(name, string(account)+".v") && strings.HasSuffix(name, ".key") {
			if err := os.Remove(filepath.Join(k.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("keyring: erase account key %s: %w", account, err)
			}
		}
	}
	if err := syncDir(k.dir); err != nil {
		return fmt.Errorf("keyring: erase account key %s: %w", account, err)
	}
	return nil
}

// syncDir makes a removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeExclusive writes data to a temporary file and links it at path, so
// that a reader never sees a half-written key file and only one of several
// concurrent writers wins (fs.ErrExist for the others).
func writeExclusive(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// os.Link fails with EEXIST when path exists: the O_EXCL of renames.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fs.ErrExist
		}
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// accountKey returns the unsealed key of account, from the cache or its
// file; NotFound when the account has no key.
func (k *Keyring) accountKey(account apiary.AccountID, version int) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := versioned{account, version}
	if key, ok := k.cache[id]; ok {
		return key, nil
	}
	sealed, err := os.ReadFile(k.path(account, version))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, apiary.E(apiary.KindNotFound, "keyring: no key version %d for account %s", version, account)
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: read account key %s: %w", account, err)
	}
	key, err := encrypt.Open(k.root, sealed, fileAAD(account, version))
	if err != nil {
		return nil, apiary.Wrap(err, apiary.KindPermanent, "keyring: account key %s does not open with this root key", account)
	}
	k.cache[id] = key
	return key, nil
}

// A data key wrapped by version 1 is Seal's output as is (it starts with
// Seal's version byte, 1); by a later version it is
// versionedFormat | uvarint(version) | Seal's output.
const versionedFormat byte = 2

// wrap seals dk under version of account's key.
func (k *Keyring) wrap(account apiary.AccountID, version int, dk []byte, encCtx encrypt.Context) ([]byte, error) {
	ak, err := k.accountKey(account, version)
	if err != nil {
		return nil, err
	}
	sealed, err := encrypt.Seal(ak, dk, canonical(account, encCtx))
	if err != nil || version <= 1 {
		return sealed, err
	}
	out := binary.AppendUvarint([]byte{versionedFormat}, uint64(version))
	return append(out, sealed...), nil
}

// unwrapVersion splits a wrapped data key into its key version and Seal's
// output; ok false when it is in neither format.
// The version must be a varint in its shortest form (last byte not 0), so
// that a wrapped key has one encoding.
func unwrapVersion(wrapped []byte) (version int, sealed []byte, ok bool) {
	if len(wrapped) == 0 {
		return 0, nil, false
	}
	if wrapped[0] != versionedFormat {
		return 1, wrapped, true
	}
	n, w := binary.Uvarint(wrapped[1:])
	if w <= 0 || w > 1 && wrapped[w] == 0 || n < 2 || n > 1<<20 {
		return 0, nil, false
	}
	return int(n), wrapped[1+w:], true
}

// GenerateDataKey returns 32 fresh random bytes and their wrapping under
// account's key and encCtx (with "account" set to account).
func (k *Keyring) GenerateDataKey(ctx context.Context, account apiary.AccountID, encCtx encrypt.Context) (encrypt.DataKey, error) {
	if err := account.Validate(); err != nil {
		return encrypt.DataKey{}, err
	}
	if err := ctx.Err(); err != nil {
		return encrypt.DataKey{}, err
	}
	if _, err := k.accountKey(account, 1); err != nil {
		return encrypt.DataKey{}, err
	}
	v, err := k.currentVersion(account)
	if err != nil {
		return encrypt.DataKey{}, err
	}
	dk := make([]byte, encrypt.KeySize)
	if _, err := rand.Read(dk); err != nil {
		return encrypt.DataKey{}, fmt.Errorf("keyring: generate data key: %w", err)
	}
	wrapped, err := k.wrap(account, v, dk, encCtx)
	if err != nil {
		encrypt.Wipe(dk)
		return encrypt.DataKey{}, fmt.Errorf("keyring: generate data key: %w", err)
	}
	return encrypt.DataKey{Plaintext: dk, Wrapped: wrapped}, nil
}

// Decrypt unwraps a data key wrapped by GenerateDataKey for the same account
// and context. NotFound when account has no key; Permanent when the wrapped
// key belongs to another account or context or was tampered with.
func (k *Keyring) Decrypt(ctx context.Context, account apiary.AccountID, wrapped []byte, encCtx encrypt.Context) ([]byte, error) {
	if err := account.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := k.accountKey(account, 1); err != nil {
		return nil, err
	}
	v, sealed, ok := unwrapVersion(wrapped)
	if !ok {
		return nil, apiary.E(apiary.KindPermanent, "decrypt: authentication failed")
	}
	ak, err := k.accountKey(account, v)
	if apiary.KindOf(err) == apiary.KindNotFound {
		return nil, apiary.E(apiary.KindPermanent, "decrypt: authentication failed")
	}
	if err != nil {
		return nil, err
	}
	return encrypt.Open(ak, sealed, canonical(account, encCtx))
}

func canonical(account apiary.AccountID, c encrypt.Context) []byte {
	m := make(encrypt.Context, len(c)+1)
	for key, v := range c {
		m[key] = v
	}
	m["account"] = string(account)
	return m.Canonical()
}

// LoadOrCreateRootKey reads a 32-byte root key from path, or creates path
// (0600, its directory 0700) with 32 random bytes when it does not exist. It
// refuses a key file that group or others may read or write.
func LoadOrCreateRootKey(path string) ([]byte, error) {
	key, err := readRootKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keyring: create root key dir: %w", err)
	}
	key = make([]byte, encrypt.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("keyring: generate root key: %w", err)
	}
	err = writeExclusive(path, key)
	if errors.Is(err, fs.ErrExist) {
		encrypt.Wipe(key)
		return readRootKey(path) // another process created it first
	}
	if err != nil {
		encrypt.Wipe(key)
		return nil, fmt.Errorf("keyring: write root key %s: %w", path, err)
	}
	return key, nil
}

func readRootKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("keyring: open root key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring: stat root key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, apiary.E(apiary.KindInvalid,
			"keyring: root key file %s has mode %04o: it must not be accessible by group or others (chmod 600 %s)",
			path, st.Mode().Perm(), path)
	}
	buf, err := io.ReadAll(io.LimitReader(f, encrypt.KeySize+1))
	if err != nil {
		encrypt.Wipe(buf)
		return nil, fmt.Errorf("keyring: read root key: %w", err)
	}
	if len(buf) != encrypt.KeySize {
		encrypt.Wipe(buf)
		return nil, apiary.E(apiary.KindInvalid, "keyring: root key file %s must hold exactly %d bytes", path, encrypt.KeySize)
	}
	return buf, nil
}

// ParseRootKey decodes a root key given as text: standard or URL-safe
// base64 (padded or not) or hex, of exactly 32 bytes. Its errors never echo
// the input.
func ParseRootKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	decoders := []func(string) ([]byte, error){
		hex.DecodeString,
		base64.StdEncoding.DecodeString,
		base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString,
		base64.RawURLEncoding.DecodeString,
	}
	for _, dec := range decoders {
		b, err := dec(s)
		if err == nil && len(b) == encrypt.KeySize {
			return b, nil
		}
		encrypt.Wipe(b)
	}
	return nil, apiary.E(apiary.KindInvalid, "keyring: root key must be %d bytes in base64 or hex", encrypt.KeySize)
}
