package region

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/herald-notify/herald/platform/config"
	"github.com/herald-notify/herald/platform/masterkey"
)

// UserKeysConfig is the master keyring that wraps the users' data keys at rest (Postgres table
// user_keys, region/userkeys; docs/residency.md, "Master keys"). The master keys never enter
// Postgres: each is a file holding the standard base64 of 32 random bytes (`herald masterkey
// init` makes one). Every region sharing a jurisdiction's database must hold the same keyring.
type UserKeysConfig struct {
	// Current is the id of the master key new data keys are wrapped under, and older rows are
	// rewrapped under.
	Current string `yaml:"current" env:"HERALD_USER_KEYS_CURRENT"`
	// MasterKeys maps each master key id (1-64 letters, digits, '.', '_', '-') to its file. Keep
	// an older id here while any row is still wrapped under it (herald_user_keys_rows).
	MasterKeys map[string]string `yaml:"master_keys"`
	// RewrapInterval is how often a running region wraps rows still in clear (written by a
	// process of an older version) and rewraps rows under an older master key; it does both at
	// start, too, which is where a rotation's rewrap happens (the new current id comes with a
	// restart). Each sweep counts the table's rows per master key id.
	RewrapInterval time.Duration `yaml:"rewrap_interval"`
}

// DefaultUserKeysConfig has no master key: every region config names its own.
func DefaultUserKeysConfig() UserKeysConfig {
	return UserKeysConfig{RewrapInterval: time.Hour}
}

// Keyring reads the master key files. Its errors name the key at fault: user_keys.current,
// user_keys.master_keys or user_keys.master_keys.<id>.
func (u UserKeysConfig) Keyring() (*masterkey.Keyring, error) {
	if len(u.MasterKeys) == 0 {
		return nil, config.Errorf("master_keys", "", "must name at least one master key file (id: file), which wraps the users' data keys; `herald masterkey init --file F` makes one")
	}
	ids := make([]string, 0, len(u.MasterKeys))
	for id := range u.MasterKeys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	keys := make(map[string][]byte, len(ids))
	for _, id := range ids {
		if !masterkey.ValidID(id) {
			return nil, config.Errorf("master_keys", id, "a master key id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
		}
		file := u.MasterKeys[id]
		key := "master_keys." + id
		if strings.TrimSpace(file) == "" {
			return nil, config.Errorf(key, "", "must be the path of the master key file")
		}
		k, err := masterkey.ReadFile(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, config.Errorf(key, file, "master key file missing (`herald masterkey init --file %s` makes a new one; a key that wrapped rows cannot be remade)", file)
		case err != nil:
			return nil, config.Errorf(key, file, "unusable master key file: %v", err)
		}
		keys[id] = k
	}
	if u.Current == "" {
		return nil, config.Errorf("current", "", "must name the master key that wraps new data keys, one of %s", strings.Join(ids, ", "))
	}
	if _, ok := keys[u.Current]; !ok {
		return nil, config.Errorf("current", u.Current, "is not an id of master_keys (%s)", strings.Join(ids, ", "))
	}
	ring, err := masterkey.NewKeyring(u.Current, keys)
	if err != nil {
		return nil, config.Errorf("master_keys", "", "%v", err)
	}
	return ring, nil
}

func (u UserKeysConfig) validate() error {
	if u.RewrapInterval < time.Second || u.RewrapInterval > 24*time.Hour {
		return config.Errorf("rewrap_interval", u.RewrapInterval.String(), "must be 1s-24h")
	}
	if _, err := u.Keyring(); err != nil {
		return err
	}
	return nil
}

// Keyring is the region's master keyring (user_keys), read from its files.
func (c Config) Keyring() (*masterkey.Keyring, error) {
	ring, err := c.UserKeys.Keyring()
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", c.Name, config.Prefix("user_keys", err))
	}
	return ring, nil
}
