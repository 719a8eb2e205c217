package awskms

import (
	"crypto/hmac"
	"crypto/sha256"

	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

// A wrapped data key as Apiary stores it:
//
//	version (1 byte, 1) | KMS ciphertext blob | check (32 bytes)
//
// check = HMAC-SHA256(checkKey, AAD(blob, canonical context)) with
// checkKey = HMAC-SHA256(dataKey, "apiary-awskms-v1 check"). Decrypt
// verifies it after KMS unwraps the blob, so that a wrapped key altered in
// any byte is refused even where KMS would not notice (an emulator that
// ignores the key id inside the blob when KeyId is given). It is a MAC
// under a key derived from the data key: it reveals nothing about it.
const (
	wrapVersion byte = 1
	checkSize        = sha256.Size
)

var checkLabel = []byte("apiary-awskms-v1 check")

func check(dataKey, blob, canonicalCtx []byte) []byte {
	kh := hmac.New(sha256.New, dataKey)
	kh.Write(checkLabel)
	checkKey := kh.Sum(nil)
	defer encrypt.Wipe(checkKey)
	h := hmac.New(sha256.New, checkKey)
	h.Write(encrypt.AAD(string(blob), string(canonicalCtx)))
	return h.Sum(nil)
}

// seal appends the version and the check to a KMS blob.
func seal(dataKey, blob, canonicalCtx []byte) []byte {
	out := make([]byte, 0, 1+len(blob)+checkSize)
	out = append(out, wrapVersion)
	out = append(out, blob...)
	return append(out, check(dataKey, blob, canonicalCtx)...)
}

// split returns the KMS blob and the check of a wrapped key, ok false when
// it is not in the format above.
func split(wrapped []byte) (blob, sum []byte, ok bool) {
	if len(wrapped) < 1+1+checkSize || wrapped[0] != wrapVersion {
		return nil, nil, false
	}
	return wrapped[1 : len(wrapped)-checkSize], wrapped[len(wrapped)-checkSize:], true
}

// verify reports whether sum is the check of blob under dataKey.
func verify(dataKey, blob, canonicalCtx, sum []byte) bool {
	return hmac.Equal(check(dataKey, blob, canonicalCtx), sum)
}
