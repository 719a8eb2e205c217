// Package pipeline is Apiary's document pipeline and query path.
//
// Ingest takes one document of a job through extract → chunk → embed (in
// batches, under an embedder budget shared by every job of the process) →
// seal → upsert into the vector store → document record. Search embeds a
// query, searches inside one account, and opens the matching chunks.
//
// What it promises:
//
//   - Encryption before storage. Every chunk's text, and the document's
//     title and metadata, are sealed (AES-256-GCM) with the
//     document's own data key before they reach the vector store or the
//     record store; the data key is stored only wrapped by the account's key
//     (encryption context: account and document). Chunks are bound to
//     (account, document, chunk id) as associated data, so a sealed chunk
//     moved to another document or account does not open. Deleting the
//     record deletes the wrapped key and with it every copy of the chunks.
//   - Idempotency. Chunk ids derive from (account, document, job version,
//     index) and are upserted; a redelivered job of the same version reuses
//     the document's data key and rewrites exactly the same ids. A newer
//     version replaces the older one's chunks once its record is written; an
//     older version arriving after a newer one changes nothing (Conflict).
//   - Visibility. Search only returns chunks whose version equals their
//     document record's version, so a half-ingested newer version is never
//     mixed with the current one, and chunks of a deleted document are never
//     returned.
//   - Tenancy. Every read and write takes the account; another account's
//     documents answer NotFound and never appear in results.
//   - Title and metadata once. They are sealed in the document record only,
//     never copied into its chunks; Search opens each document's record once
//     per query and gives every result of it that title and metadata.
//   - Bounded work. A document's extracted text is at most a small multiple
//     of its size and never over MaxDocumentBytes (package extract); its
//     title and metadata stay within apiary's limits (MaxTitleBytes,
//     MaxMetadataBytes and the like). Beyond them Ingest fails that document
//     only, TooLarge or Invalid.
//   - Fair sharing. The embedder budget (EmbedConcurrency calls at once)
//     is shared fairly among accounts, not first come, first served: when
//     batches wait, the next slot goes to the account holding the fewest
//     slots, then to the one served least recently, and an account's own
//     batches keep their order (package internal/fairsem). A quiet account's
//     document thus waits for one slot to free, not behind another
//     account's backlog; an account alone gets the whole budget. Extraction,
//     chunking and sealing run outside the budget (they are bounded per job
//     by the workers' DocConcurrency, and sealing is cheap), and so do key
//     service and store calls, which wait on I/O.
//   - Privacy of errors. No error carries document text, a key or a token.
//
// Concurrent Ingest calls for the same document are not serialized here:
// the record is written with a compare-and-swap, so an older version never
// replaces a newer one, and Search skips (and logs) chunks that do not open
// with their document's key. Ingest's comment lists the windows that remain.
package pipeline
