package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
)

// tokenBytes is the size of every session token and API token secret: 256 bits.
const tokenBytes = 32

// newToken returns a random 256-bit token in base64url without padding (43 characters).
func newToken() string {
	b := make([]byte, tokenBytes)
	rand.Read(b) // never fails (crypto/rand panics rather than return an error since Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// lowerBase32 is used where a person may copy the string: only lower-case letters and digits,
// so a double click selects all of it.
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomString returns n bytes of randomness in lower-case base32.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return lowerBase32.EncodeToString(b)
}

// hashToken is how a session token or API token is stored and looked up.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
