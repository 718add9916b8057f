package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// File is the file backend: registrations are JSON files refreshed by heartbeat, keys are files
// whose modification time is their index. Several processes on one machine share the directory;
// writes go through a rename so a reader never sees half a file.
type File struct {
	root     string
	ttl      time.Duration
	poll     time.Duration
	waitTime time.Duration
}

// NewFile opens (creating) a file backend rooted at dir.
func NewFile(dir string, ttl time.Duration) (*File, error) {
	for _, d := range []string{"services", "kv"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("discovery dir: %w", err)
		}
	}
	return &File{root: dir, ttl: ttl, poll: 100 * time.Millisecond, waitTime: 5 * time.Minute}, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func checkName(kind, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("discovery: invalid %s %q", kind, s)
	}
	return nil
}

// keyPath maps "herald/residency/policy" to a file under kv/, refusing ".." and empty parts.
func (f *File) keyPath(key string) (string, error) {
	parts := strings.Split(key, "/")
	for _, p := range parts {
		if err := checkName("key part", p); err != nil {
			return "", err
		}
	}
	return filepath.Join(append([]string{f.root, "kv"}, parts...)...), nil
}

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Register writes the instance with a fresh heartbeat time.
func (f *File) Register(_ context.Context, in Instance) error {
	if err := checkName("service", in.Service); err != nil {
		return err
	}
	if err := checkName("instance id", in.ID); err != nil {
		return err
	}
	in.Updated = time.Now().UTC()
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(f.root, "services", in.Service, in.ID+".json"), data)
}

// Deregister removes the instance.
func (f *File) Deregister(_ context.Context, service, id string) error {
	if checkName("service", service) != nil || checkName("instance id", id) != nil {
		return fmt.Errorf("discovery: invalid service or id")
	}
	err := os.Remove(filepath.Join(f.root, "services", service, id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Instances lists the instances whose heartbeat is younger than the TTL, sorted by id.
func (f *File) Instances(_ context.Context, service string) ([]Instance, error) {
	if err := checkName("service", service); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(f.root, "services", service))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Instance
	now := time.Now()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(f.root, "services", service, e.Name()))
		if err != nil {
			continue // removed between listing and reading
		}
		var in Instance
		if json.Unmarshal(data, &in) != nil || now.Sub(in.Updated) > f.ttl {
			continue
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Get reads a key; its index is the file's modification time in nanoseconds.
func (f *File) Get(_ context.Context, key string) ([]byte, uint64, error) {
	p, err := f.keyPath(key)
	if err != nil {
		return nil, 0, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, 0, err
	}
	return data, uint64(st.ModTime().UnixNano()), nil
}

// Put writes a key atomically.
func (f *File) Put(_ context.Context, key string, value []byte) error {
	p, err := f.keyPath(key)
	if err != nil {
		return err
	}
	return writeAtomic(p, value)
}

// Watch polls the key until its index changes. A key that does not exist has index 0.
func (f *File) Watch(ctx context.Context, key string, index uint64) ([]byte, uint64, error) {
	deadline := time.Now().Add(f.waitTime)
	t := time.NewTicker(f.poll)
	defer t.Stop()
	for {
		v, idx, err := f.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			v, idx, err = nil, 0, nil
		}
		if err != nil {
			return nil, index, err
		}
		if idx != index || time.Now().After(deadline) {
			return v, idx, nil
		}
		select {
		case <-ctx.Done():
			return nil, index, ctx.Err()
		case <-t.C:
		}
	}
}
