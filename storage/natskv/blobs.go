package natskv

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// MaxBlobSize is the largest value Blobs.Put accepts.
const MaxBlobSize = 64 << 20

// Blobs is a JetStream object store.
type Blobs struct {
	os     jetstream.ObjectStore
	stream jetstream.Stream // erases a deleted object's chunks
	name   string
}

var _ storage.Blobs = (*Blobs)(nil)

// NewBlobs opens the object store cfg.Prefix+bucket, creating it (or
// updating its configuration) if needed. bucket is [A-Za-z0-9_-]+.
func NewBlobs(ctx context.Context, js jetstream.JetStream, bucket string, cfg Config) (*Blobs, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "natskv: config")
	}
	if !storage.ValidName(bucket) {
		return nil, apiary.E(apiary.KindInvalid, "natskv: object store name %q may hold only A-Z, a-z, 0-9, '_' and '-'", bucket)
	}
	full := cfg.Prefix + bucket
	o, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:   full,
		Replicas: cfg.Replicas,
		Storage:  cfg.Storage,
	})
	if err != nil {
		return nil, translate(err, "open object store", full)
	}
	stream, err := js.Stream(ctx, "OBJ_"+full)
	if err != nil {
		return nil, translate(err, "open object store", full)
	}
	return &Blobs{os: o, stream: stream, name: full}, nil
}

func (b *Blobs) subject(key string) string { return b.name + "/" + key }

// Put stores data at key, replacing any value; over MaxBlobSize is TooLarge.
func (b *Blobs) Put(ctx context.Context, key string, data []byte) error {
	if key == "" {
		return apiary.E(apiary.KindInvalid, "natskv: put blob: key is required")
	}
	if len(data) > MaxBlobSize {
		return apiary.E(apiary.KindTooLarge, "natskv: put blob %s: %d bytes is over the limit of %d", b.subject(key), len(data), MaxBlobSize)
	}
	_, err := b.os.PutBytes(ctx, key, data)
	return translate(err, "put blob", b.subject(key))
}

// Get returns the value at key, or a NotFound error.
func (b *Blobs) Get(ctx context.Context, key string) ([]byte, error) {
	if key == "" {
		return nil, apiary.E(apiary.KindInvalid, "natskv: get blob: key is required")
	}
	data, err := b.os.GetBytes(ctx, key)
	if err != nil {
		return nil, translate(err, "get blob", b.subject(key))
	}
	return data, nil
}

// Delete removes key; a missing key is not an error.
func (b *Blobs) Delete(ctx context.Context, key string) error {
	if key == "" {
		return apiary.E(apiary.KindInvalid, "natskv: delete blob: key is required")
	}
	info, err := b.os.GetInfo(ctx, key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	if err != nil {
		return translate(err, "delete blob", b.subject(key))
	}
	if err := b.eraseChunks(ctx, info.NUID); err != nil {
		return translate(err, "erase blob", b.subject(key))
	}
	err = b.os.Delete(ctx, key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	return translate(err, "delete blob", b.subject(key))
}

// eraseChunks erases the chunks of the object nuid: the object store's own
// delete only marks them deleted.
func (b *Blobs) eraseChunks(ctx context.Context, nuid string) error {
	return eraseSubject(ctx, b.stream, "$O."+b.name+".C."+nuid, 0)
}
