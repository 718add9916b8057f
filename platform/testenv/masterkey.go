package testenv

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/herald-notify/herald/platform/masterkey"
)

// MasterKeyID is the id of the test process's master key.
const MasterKeyID = "test-1"

var (
	masterOnce sync.Once
	masterFile string
	masterErr  error
)

// MasterKeyFile returns the file of the test process's master key (made for this run, never
// the local stack's), id MasterKeyID: every test region of the process wraps its data keys
// under it, as the regions sharing a jurisdiction's database share one.
func MasterKeyFile(t testing.TB) string {
	t.Helper()
	masterOnce.Do(func() {
		var dir string
		if dir, masterErr = os.MkdirTemp("", "herald-test-masterkey-"); masterErr != nil {
			return
		}
		masterFile = filepath.Join(dir, MasterKeyID+".key")
		_, masterErr = masterkey.CreateFile(masterFile)
	})
	if masterErr != nil {
		t.Fatalf("test master key: %v", masterErr)
	}
	return masterFile
}

// MasterKeyring is the keyring of the test process's master key alone.
func MasterKeyring(t testing.TB) *masterkey.Keyring {
	t.Helper()
	key, err := masterkey.ReadFile(MasterKeyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	r, err := masterkey.NewKeyring(MasterKeyID, map[string][]byte{MasterKeyID: key})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
