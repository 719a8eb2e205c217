// Package vecguard is vector protection: a storage.VectorStore decorator
// that stores each protected account's vectors transformed by a secret
// random orthogonal rotation and rotates queries the same way, so cosine
// similarity, scores and results are those of the vectors as embedded,
// while the stored vectors are of no use to whoever reads the store
// without the account's key. It works over every vector store (local,
// milvus).
//
// The rotation is Haar-random (Householder QR of a Gaussian matrix), drawn
// from an AES-256-CTR stream keyed by HKDF of the account's protection
// secret and the dimension; the secret comes from Keys (the composition
// root derives it from the account's lexical key, which is stored only
// wrapped by the account's key, so erasing the account's key makes the
// rotation unrecoverable).
//
// Whether an account is protected is decided once, when its first vectors
// are written through a Store, and kept in Records: protected when
// Options.Protect is set and the inner store holds no vector of the
// account yet. An account with vectors stored before protection stays
// unprotected (its old and new vectors must share one space) until its
// vectors and its decision are deleted and it is ingested again.
//
// Its limit: a rotation keeps every distance and angle, so someone who
// holds many known text/vector pairs of an account (embedding texts of
// their choice with the same model, and finding them among the stored
// vectors) can estimate the rotation (orthogonal Procrustes) and undo it.
// It does not protect against whoever holds the account's key, nor against
// queries through the API.
package vecguard
