package awskms

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"

	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

// A wrapped data key as Apiary stores it:
//
//	version (1 byte, 1) | KMS ciphertext blob | check (32 bytes)
//
// under the account key's first version (the alias <prefix><account>), and
// under version n ≥ 2 (the alias <prefix><account>/v<n>, see rotate.go)
//
//	2 | uvarint(n) | KMS ciphertext blob | check (32 bytes)
//
// check = HMAC-SHA256(checkKey, AAD(blob, canonical context)) with
// checkKey = HMAC-SHA256(dataKey, "apiary-awskms-v1 check"). Decrypt
// verifies it after KMS unwraps the blob, so that a wrapped key altered in
// any byte is refused even where KMS would not notice (an emulator that
// ignores the key id inside the blob when KeyId is given). It is a MAC
// under a key derived from the data key: it reveals nothing about it.
const (
	wrapVersion         byte = 1
	wrapVersionedFormat byte = 2
	checkSize                = sha256.Size
	maxKeyVersion            = 1 << 20
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

// seal frames a KMS blob made under the account key's version: the format
// byte (and the version from 2 on) in front, the check behind.
func seal(version int, dataKey, blob, canonicalCtx []byte) []byte {
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(blob)+checkSize)
	if version <= 1 {
		out = append(out, wrapVersion)
	} else {
		out = binary.AppendUvarint(append(out, wrapVersionedFormat), uint64(version))
	}
	out = append(out, blob...)
	return append(out, check(dataKey, blob, canonicalCtx)...)
}

// split returns the key version, the KMS blob and the check of a wrapped
// key, ok false when it is not in the format above.
// The version must be a varint in its shortest form (last byte not 0), so
// that a wrapped key has one encoding.
func split(wrapped []byte) (version int, blob, sum []byte, ok bool) {
	if len(wrapped) < 1+1+checkSize {
		return 0, nil, nil, false
	}
	head := 1
	switch wrapped[0] {
	case wrapVersion:
		version = 1
	case wrapVersionedFormat:
		n, w := binary.Uvarint(wrapped[1:])
		if w <= 0 || w > 1 && wrapped[w] == 0 || n < 2 || n > maxKeyVersion || len(wrapped) < 1+w+1+checkSize {
			return 0, nil, nil, false
		}
		version, head = int(n), 1+w
	default:
		return 0, nil, nil, false
	}
	return version, wrapped[head : len(wrapped)-checkSize], wrapped[len(wrapped)-checkSize:], true
}

// verify reports whether sum is the check of blob under dataKey.
func verify(dataKey, blob, canonicalCtx, sum []byte) bool {
	return hmac.Equal(check(dataKey, blob, canonicalCtx), sum)
}
