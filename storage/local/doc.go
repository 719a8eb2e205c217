// Package local is the embedded vector store, the default of `apiary serve`:
// one directory, no other process.
//
// What it promises:
//
//   - Durability. Every Upsert and DeleteDocument is appended to a log of
//     CRC-32C checked records and fsynced before the call returns, so a
//     returned nil survives kill -9 and power loss. Open replays the log; a
//     torn record at its tail (a write cut short by a crash) is dropped and
//     truncated away, while damage anywhere else fails Open rather than
//     silently losing data.
//   - Compaction. When the log grows past CompactRatio times the size of the
//     live records it is rewritten as a snapshot: a temporary file, fsync,
//     atomic rename over the log, fsync of the directory. Deletes compact
//     too, so that a deleted record's sealed bytes leave the file: once
//     CompactDeletedBytes (256 KiB) have been deleted, at Close and at Open
//     after any delete, and at once after DeleteAccount.
//   - No plaintext at rest. The store writes identifiers, versions, models,
//     float32 vectors, keyed term hashes with their counts and the Sealed
//     bytes it is given, verbatim; chunk text only ever reaches it sealed
//     (titles and metadata stay in document records) and terms only hashed.
//     With Options.Keys, each record's vector and terms are written sealed
//     (AES-256-GCM under the account's key, bound to the account, chunk,
//     document, version, index and model), in the log and in snapshots;
//     only memory holds them open. What stays readable: the identifiers,
//     versions, indexes, models, deletions, and each sealed part's length
//     (the dimension and, roughly, how many distinct terms the chunk has).
//     Open asks for each account's key once; an account whose key is gone
//     (erased: NotFound) is dropped with one warning, as is a record that
//     does not open under its account's key, and the log is rewritten
//     without them at once. A log written in the clear opens with Keys
//     and is rewritten sealed at once; a sealed log does not open without
//     them.
//   - Tenancy in one place. Every method goes through scoped(account), and a
//     record whose Account differs from the call's account is Invalid.
//   - One dimension. All vectors in a store share one dimension: Options.Dim,
//     recorded when the store is opened, or else that of the first vector ever
//     upserted; it is persisted, any other is Invalid, and Open with another
//     Options.Dim fails (Invalid) saying what to do.
//   - Concurrency. Searches run in parallel under a read lock; writes are
//     serialized. Search is exact (brute-force cosine, top-k by a min-heap),
//     and ties are broken by ChunkID so results are deterministic.
//   - Lexical search. Each account has an inverted index of its records'
//     term hashes, kept in memory and rebuilt from the log on Open, with
//     the statistics of BM25 (record count, total length, document
//     frequency per hash) kept current by every write: SearchLexical is
//     exact BM25 over the account's records alone.
//
// A directory is locked (flock) while a Store has it open; a second Open of
// the same directory fails with a Conflict error.
package local
