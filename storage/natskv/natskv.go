package natskv

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natserr"
	"github.com/apiaryhq/apiary/storage"
)

// Config describes how buckets and object stores are created.
type Config struct {
	// Prefix goes before every bucket and object-store name, so that Apiary's
	// streams are easy to tell apart on a shared server. Default "apiary_".
	Prefix string
	// Replicas is the number of copies of each bucket on a cluster.
	// Default 1; use 3 on a three-node cluster.
	Replicas int
	// Storage is where the server keeps the buckets. Default (the zero
	// value) jetstream.FileStorage.
	Storage jetstream.StorageType
	// EraseReplaced names the buckets (without Prefix) whose replaced
	// values are erased from the server's files when an update or put
	// replaces them: the buckets that hold wrapped keys (every bucket keeps
	// two revisions per key, so the replaced one is still there to erase
	// once the new one is stored). Every bucket erases a deleted key's values.
	EraseReplaced []string
	// Logger receives the warning about a bucket that cannot erase; default
	// slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "apiary_"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem with c (after defaults are applied).
func (c Config) Validate() error {
	var errs []error
	if !storage.ValidName(c.Prefix) {
		errs = append(errs, fmt.Errorf("natskv: Prefix %q may hold only A-Z, a-z, 0-9, '_' and '-'", c.Prefix))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("natskv: Replicas must be 1 to 5, got %d", c.Replicas))
	}
	if c.Storage != jetstream.FileStorage && c.Storage != jetstream.MemoryStorage {
		errs = append(errs, fmt.Errorf("natskv: unknown Storage %d", c.Storage))
	}
	return errors.Join(errs...)
}

func invalidKey(op, key string) error {
	return apiary.E(apiary.KindInvalid, "natskv: %s: key %q must be tokens of A-Z, a-z, 0-9, '_', '=' and '-' joined by '.'", op, key)
}

// translate classifies an error of the NATS client under the root package's
// kinds (internal/natserr), naming op and subject; a nil err gives nil.
func translate(err error, op, subject string) error {
	return natserr.Wrap(err, "natskv: %s %s", op, subject)
}
