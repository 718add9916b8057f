package residency

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// UserKey is how the global tier and the audit name a user without holding the id: the hex
// HMAC-SHA256, under the directory secret, of the app id and the user id. Without the secret a
// dump of the directory or the audit reveals no identifier, and the same user id in two apps
// gives two unrelated keys.
func UserKey(secret []byte, app, user string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(app))
	m.Write([]byte{0}) // app ids never hold NUL, so (app, user) pairs cannot collide
	m.Write([]byte(user))
	return hex.EncodeToString(m.Sum(nil))
}
