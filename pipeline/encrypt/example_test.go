package encrypt_test

import (
	"bytes"
	"fmt"

	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

func ExampleSeal() {
	key := bytes.Repeat([]byte{1}, encrypt.KeySize) // use a data key from a KeyProvider
	aad := encrypt.AAD("acme", "report.txt", "chunk-0")
	sealed, _ := encrypt.Seal(key, []byte("quarterly numbers"), aad)

	plain, err := encrypt.Open(key, sealed, aad)
	fmt.Println(string(plain), err)

	_, err = encrypt.Open(key, sealed, encrypt.AAD("globex", "report.txt", "chunk-0"))
	fmt.Println(err)
	// Output:
	// quarterly numbers <nil>
	// decrypt: authentication failed
}
