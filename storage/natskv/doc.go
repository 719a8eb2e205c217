// Package natskv implements storage.KVStore, storage.KV and storage.Blobs on
// NATS JetStream key-value buckets and object stores: embedded in `apiary
// serve`, or an external cluster (Replicas 3) in a distributed deployment.
//
// What it promises, beyond the storage ports:
//
//   - Buckets are named Config.Prefix + name and keep two revisions per key
//     (History 2: a deleted value stays behind its delete marker until it is
//     erased); Bucket creates a bucket or updates its configuration.
//   - Deleting erases: a deleted key's values and a deleted blob's chunks
//     are overwritten in the server's files (JetStream's secure delete), not
//     only marked deleted (the marker is stored first, so that a key never
//     has no message at all: a listing running then missed other keys); in the buckets of Config.EraseReplaced (those
//     holding wrapped keys) so is the value an update or put replaces. The
//     client library makes key-value streams that deny deletes, so Bucket
//     makes the stream itself; a bucket made before cannot erase (a warning
//     is logged). Erasing is slow (BenchmarkUpdate: an erasing update about
//     3.7 ms against 0.03–0.1 ms on a file store, the server rewrites and
//     syncs the block), which is why hot buckets (jobs) only erase deletes.
//   - Revisions are JetStream stream sequences: they grow across the whole
//     bucket, not per key, and Update is a compare-and-set on the key's last
//     sequence, so concurrent updaters of one key never lose a write.
//   - Keys are tokens of [A-Za-z0-9_=-] joined by '.' (no wildcards, no
//     empty tokens); anything else is Invalid before it reaches the server.
//   - Errors are translated here: a missing key or object is NotFound, a
//     failed create or compare-and-set is Conflict, a closed connection,
//     a timeout or no responders is Unavailable.
//   - Blobs hold values up to MaxBlobSize (64 MiB), chunked by the object
//     store; a larger value is TooLarge.
//
// All types are safe for concurrent use.
package natskv
