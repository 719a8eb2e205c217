// Package lexical is the lexical side of search without plaintext terms:
// text becomes terms (Tokens: Unicode folding, English stop words and
// stemming), and each term becomes a keyed hash, HMAC-SHA256 under the
// account's lexical key cut to 32 bits, which is all a vector store sees.
//
// What a keyed-hash index reveals to whoever reads the store: inside one
// account, which chunks share a term, how often a term occurs in a chunk,
// how many chunks hold it and how long each chunk is (in terms). What it
// does not: the terms themselves, without the account's key (a dictionary
// attack needs the key); and nothing across accounts, since every account
// hashes under its own key, so the same word has unrelated hashes in two
// accounts.
//
// Each account's key is made once by the key provider (encryption context
// account and purpose "lexical") and stored only wrapped by the account's
// key (Keys), so erasing the account's key makes its lexical index as
// unreadable as its chunks. Key.Derive makes keys for other purposes from
// it that go the same way (the local vector store's key for what it keeps
// at rest).
package lexical
