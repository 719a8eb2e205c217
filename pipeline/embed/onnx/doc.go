// Package onnx embeds text in-process with a sentence-embedding model run by
// ONNX Runtime. The model table (models.go) names each model with its
// pooling, query prefix, token limit and pinned artifacts; New loads one of
// them from a models directory filled by `apiary models pull`.
//
// Promises (beyond the embed port's): a text longer than the model's token
// limit is truncated, never refused, and an empty text gets a vector; every
// vector is L2-normalised; Model is "onnx/<name>@<version>". Vectors of an
// fp32 model do not depend on the batch a text is in (to float noise, 1e-6);
// an int8 model quantises activations per batch, so the same text in two
// batches gives vectors with cosine ≈ 0.99, not equal ones.
//
// Tokenising: as Hugging Face's tokenizers does with the model's
// tokenizer.json, except that the file's truncation and fixed padding (128 in
// the jars) give way to the model's limit and per-batch padding.
// sugarme/tokenizer does the WordPiece part; normalising (accents, Unicode
// spaces, control characters, lowercase, CJK), special tokens written in the
// text and the [CLS] … [SEP] template are done here, where sugarme v0.3.0
// gets them wrong (tokenize.go). On 20,000 real paragraphs the ids equal
// Hugging Face's; they differ only for combining marks newer than Hugging
// Face's Unicode tables, which are stripped here and kept there.
//
// Batching: one Embed call's texts are sorted by token count and run in
// batches of Config.BatchSize, each padded to its longest text; vectors come
// back in input order. Batches run one at a time per Embedder, each on
// Config.Threads cores; tokenising runs in the caller's goroutine.
//
// ONNX Runtime is a shared library loaded with dlopen through cgo: a binary
// that uses this package must be built with CGO_ENABLED=1 (and a C
// compiler). Built without cgo, the package compiles but New reports that it
// cannot load the runtime. The library is loaded once per process, by the
// first New, and shared by every Embedder.
package onnx
