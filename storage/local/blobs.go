package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// MaxBlobSize is the largest value Blobs.Put accepts.
const MaxBlobSize = 64 << 20

// Blobs is a storage.Blobs of one file per value in a directory, for the
// embedded deployment. A file is named by the SHA-256 of its key and written
// whole: temporary file, fsync, rename, fsync of the directory; so Put is
// durable when it returns and a crash leaves either the old or the new value.
// It holds the bytes it is given verbatim (staged uploads arrive sealed).
// Safe for concurrent use; for one key, the last Put to finish wins.
type Blobs struct {
	dir string
}

var _ storage.Blobs = (*Blobs)(nil)

const blobTmpSuffix = ".tmp"

// OpenBlobs opens (creating it if needed) the blob directory dir and removes
// any half-written value a crash left behind.
func OpenBlobs(dir string) (*Blobs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local: open blobs %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("local: open blobs %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), blobTmpSuffix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("local: open blobs %s: %w", dir, err)
			}
		}
	}
	return &Blobs{dir: dir}, nil
}

func (b *Blobs) path(op, key string) (string, error) {
	if key == "" {
		return "", apiary.E(apiary.KindInvalid, "local: %s: key is required", op)
	}
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(b.dir, hex.EncodeToString(sum[:])), nil
}

// Put stores data at key, replacing any value; over MaxBlobSize is TooLarge.
func (b *Blobs) Put(ctx context.Context, key string, data []byte) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: put blob: %w", err)
	}
	path, err := b.path("put blob", key)
	if err != nil {
		return err
	}
	if len(data) > MaxBlobSize {
		return apiary.E(apiary.KindTooLarge, "local: put blob: %d bytes is over the limit of %d", len(data), MaxBlobSize)
	}
	f, err := os.CreateTemp(b.dir, "blob-*"+blobTmpSuffix)
	if err != nil {
		return apiary.Wrap(err, apiary.KindUnavailable, "local: put blob")
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return apiary.Wrap(err, apiary.KindUnavailable, "local: put blob")
	}
	if err := f.Sync(); err != nil {
		return apiary.Wrap(err, apiary.KindUnavailable, "local: put blob")
	}
	if err := f.Close(); err != nil {
		return apiary.Wrap(err, apiary.KindUnavailable, "local: put blob")
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return apiary.Wrap(err, apiary.KindUnavailable, "local: put blob")
	}
	return syncDir(b.dir)
}

// Get returns the value at key, or a NotFound error.
func (b *Blobs) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local: get blob: %w", err)
	}
	path, err := b.path("get blob", key)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, apiary.Wrap(err, apiary.KindNotFound, "local: get blob: not found")
	}
	if err != nil {
		return nil, apiary.Wrap(err, apiary.KindUnavailable, "local: get blob")
	}
	return data, nil
}

// Delete removes key; a missing key is not an error.
func (b *Blobs) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: delete blob: %w", err)
	}
	path, err := b.path("delete blob", key)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return apiary.Wrap(err, apiary.KindUnavailable, "local: delete blob")
	}
	return nil
}
