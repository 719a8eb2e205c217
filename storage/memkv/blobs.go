package memkv

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// MaxBlobSize is the largest value Blobs.Put accepts, as in natskv.
const MaxBlobSize = 64 << 20

// Blobs is an in-memory storage.Blobs.
type Blobs struct {
	mu   sync.RWMutex
	data map[string][]byte
}

var _ storage.Blobs = (*Blobs)(nil)

// NewBlobs returns an empty Blobs.
func NewBlobs() *Blobs { return &Blobs{data: make(map[string][]byte)} }

func checkBlob(ctx context.Context, op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memkv: %s %s: %w", op, key, err)
	}
	if key == "" {
		return apiary.E(apiary.KindInvalid, "memkv: %s: key is required", op)
	}
	return nil
}

// Put stores data at key, replacing any value; over MaxBlobSize is TooLarge.
func (b *Blobs) Put(ctx context.Context, key string, data []byte) error {
	if err := checkBlob(ctx, "put blob", key); err != nil {
		return err
	}
	if len(data) > MaxBlobSize {
		return apiary.E(apiary.KindTooLarge, "memkv: put blob %s: %d bytes is over the limit of %d", key, len(data), MaxBlobSize)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.data[key] = slices.Clone(data)
	return nil
}

// Get returns the value at key, or a NotFound error.
func (b *Blobs) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkBlob(ctx, "get blob", key); err != nil {
		return nil, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	d, ok := b.data[key]
	if !ok {
		return nil, apiary.E(apiary.KindNotFound, "memkv: get blob %s: not found", key)
	}
	return slices.Clone(d), nil
}

// Delete removes key; a missing key is not an error.
func (b *Blobs) Delete(ctx context.Context, key string) error {
	if err := checkBlob(ctx, "delete blob", key); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.data, key)
	return nil
}
