// Package milvus is the distributed vector store: storage.VectorStore on a
// Milvus server (2.4 or later, or Milvus Lite), through milvus-sdk-go/v2.
// It is the only package that imports the Milvus SDK.
//
// # Schema
//
// All accounts share one collection (Config.Collection, "apiary_chunks" by
// default), created by Open if missing:
//
//	id          VarChar(129)  primary key: account + ":" + chunk_id
//	chunk_id    VarChar(64)   storage.VectorRecord.ChunkID
//	account     VarChar(64)   partition key
//	document    VarChar(512)  the document id, any UTF-8
//	version     Int64         document version (uint64 up to MaxInt64)
//	chunk_index Int64
//	sealed      VarChar(65535) base64 of the Sealed bytes (at most MaxSealedBytes)
//	model       VarChar(256)  the embedding model
//	vector      FloatVector(Dim), index HNSW (M 16, efConstruction 200) or
//	            AUTOINDEX, metric COSINE
//	lexical     SparseFloatVector, BM25 document weights by term hash,
//	            index SPARSE_INVERTED_INDEX, metric IP
//	terms       Array<Int64>(4096) the term hashes (document frequencies)
//	length      Int64         the chunk's length in terms
//
// The primary key includes the account so that an upsert in one account can
// never replace a row of another, even with an equal chunk id; upserts by
// the same (account, chunk id) replace, which makes redelivered jobs
// idempotent. Milvus has no bytes scalar type, hence base64 in a VarChar.
// Only ids, numbers, the vector, keyed term hashes and ciphertext are
// stored: chunk text reaches Milvus sealed (titles and metadata stay in
// document records).
//
// # Lexical search
//
// SearchLexical is BM25 computed by Apiary, since Milvus's own BM25 would
// need the plaintext: each row's sparse vector holds its BM25 document
// weights, and a query's holds each term's idf from the account's current
// statistics (a count of its rows and, per term, of the rows holding it),
// so the inner product is the score. The one approximation: the mean
// length is fixed in a row's weights when it is written (lexical.go says
// how it is estimated). A collection created before lexical search (no
// lexical fields) still opens: it serves dense search, and SearchLexical
// answers storage.ErrNoLexical naming the fix, a new collection.
//
// Open is idempotent and safe when several processes start at once: it
// creates the collection and index only if missing, tolerates losing the
// creation race, checks that an existing collection has this schema and
// dimension (Invalid otherwise), and loads it. With IndexDefault it builds
// HNSW and falls back to AUTOINDEX if the server refuses HNSW; searches use
// parameters matching the index actually present.
//
// # Tenancy
//
// The account is the partition key, so Milvus hashes accounts onto a fixed
// set of partitions and a search filtered by account scans only one of
// them. Every expression sent to Milvus (Search, SearchLexical and its
// counts, Count, Scan, DeleteDocument) is built by scope.filter, which always
// starts with `account == "..."` and quotes every string value: backslashes and double quotes are escaped and
// control characters spelled \uXXXX, so a document id cannot close its
// literal and widen a filter to other documents or accounts. Upsert refuses
// any record whose Account is not the call's account.
//
// # Consistency
//
// Config.Consistency sets the level of Search and Count (and the default of
// the collection Open creates). The default, Bounded, may miss writes of
// the last few seconds (Milvus' graceful time): a chunk is searchable
// shortly after its job succeeds, which suits ingestion. Session sees this
// process's own writes only; Strong sees every acknowledged write and is
// what the tests use. DeleteDocument does not use it: the SDK sends delete
// requests with the level left at its zero value, Strong, under which
// Milvus resolves the expression against every write acknowledged before
// the delete, so rows written just before are removed too.
// Upsert is not atomic across batches (512 rows or 8 MiB each); a failure
// part way leaves earlier batches written, and the retry overwrites them.
//
// # Timeouts and errors
//
// Every call to Milvus runs under Config.Timeout (10 s by default), which
// should stay well below a job's lease, so a hung server turns into a
// retryable error rather than a lost lease; the SDK itself retries
// Unavailable and rate-limited calls inside that budget. Open has its own
// budget, Config.OpenTimeout (1 min), for connecting, creating and loading.
// Errors carry the root package's kinds: an unreachable, slow, throttling
// or still-loading server, or an expired deadline, is Unavailable; bad
// input (wrong dimension, NaN or zero vector, k < 1, foreign account,
// malformed ids) is Invalid and is detected before anything is written; a
// Sealed value over MaxSealedBytes is TooLarge; anything else is Other.
// Messages name the operation and the account, never chunk contents.
//
// Scores are cosine similarities in [-1, 1], best first. k is capped at
// 16384, Milvus' limit. Scan pages through an account's rows with a query
// iterator's first batch (ordered by primary key, so by chunk id), limit
// capped likewise; a filter on the model (VectorFilter.Model) matches the
// model field.
package milvus
