package manifest

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"backstop/shared/atomicfile"
)

// Catalog is the local list of snapshots (BACKUP_DIR/manifest.json): every
// complete snapshot's manifest, newest first. It is only ever replaced
// atomically (Save); callers serialise read-modify-write cycles with the
// backup lock.
type Catalog struct {
	Schema    int        `json:"schema"`
	Host      string     `json:"host"`
	Snapshots []Manifest `json:"snapshots"`
}

// LoadCatalog reads the catalog at path. A missing file is an empty catalog
// (no error). A catalog with an unknown schema or any invalid manifest fails
// whole, naming the entry: snapshots[3].db.sha256: ...
func LoadCatalog(path string) (*Catalog, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Catalog{Schema: Schema, Snapshots: []Manifest{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load catalog %s: %w", path, err)
	}
	c, err := DecodeCatalog(data)
	if err != nil {
		return nil, fmt.Errorf("load catalog %s: %w", path, err)
	}
	return c, nil
}

// DecodeCatalog parses and validates an encoded catalog, sorting its
// snapshots newest first.
func DecodeCatalog(data []byte) (*Catalog, error) {
	if err := checkSchema(data, "catalog"); err != nil {
		return nil, err
	}
	var c Catalog
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode catalog: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	c.sort()
	return &c, nil
}

func (c *Catalog) validate() error {
	var errs []error
	seen := make(map[string]bool, len(c.Snapshots))
	for i := range c.Snapshots {
		m := &c.Snapshots[i]
		if err := m.Validate(); err != nil {
			errs = append(errs, prefixFields(fmt.Sprintf("snapshots[%d].", i), err))
		}
		if seen[m.ID] {
			errs = append(errs, &FieldError{Field: fmt.Sprintf("snapshots[%d].id", i), Msg: fmt.Sprintf("%s listed twice", m.ID)})
		}
		seen[m.ID] = true
	}
	return errors.Join(errs...)
}

// prefixFields puts prefix before the field name of every FieldError in a
// joined validation error.
func prefixFields(prefix string, err error) error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, &FieldError{Field: prefix + fe.Field, Msg: fe.Msg})
			return
		}
		out = append(out, e)
	}
	walk(err)
	return errors.Join(out...)
}

// newerFirst orders manifests newest first: by created_at, then by id.
func newerFirst(a, b Manifest) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}

// SortNewestFirst sorts snapshots newest first (created_at, then id), the
// order of the catalog and of `probe list`.
func SortNewestFirst(snaps []Manifest) { slices.SortStableFunc(snaps, newerFirst) }

func (c *Catalog) sort() { SortNewestFirst(c.Snapshots) }

// Encode validates the catalog and returns it as indented JSON, newest
// snapshot first.
func (c *Catalog) Encode() ([]byte, error) {
	if c.Schema == 0 {
		c.Schema = Schema
	}
	if c.Schema != Schema {
		return nil, fmt.Errorf("encode catalog: schema %d is not %d: %w", c.Schema, Schema, ErrSchema)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("encode catalog: %w", err)
	}
	c.sort()
	out := *c
	out.Snapshots = make([]Manifest, len(c.Snapshots))
	for i := range c.Snapshots {
		out.Snapshots[i] = *c.Snapshots[i].normalized()
	}
	return encodeJSON(&out)
}

// Save writes the catalog to path atomically (temp file, fsync, rename;
// mode 0600). On error the previous catalog is untouched.
func (c *Catalog) Save(path string) error {
	data, err := c.Encode()
	if err != nil {
		return fmt.Errorf("save catalog %s: %w", path, err)
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("save catalog: %w", err)
	}
	return nil
}

// Upsert validates m and adds it, or replaces the snapshot with the same
// id, keeping the catalog newest first. An empty catalog host is taken from
// m; a manifest of another host is refused.
func (c *Catalog) Upsert(m Manifest) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("catalog upsert %s: %w", m.ID, err)
	}
	if c.Host == "" {
		c.Host = m.Host
	} else if m.Host != c.Host {
		return fmt.Errorf("catalog upsert %s: host %q is not the catalog's host %q: %w", m.ID, m.Host, c.Host, ErrInvalid)
	}
	if c.Schema == 0 {
		c.Schema = Schema
	}
	if i := c.index(m.ID); i >= 0 {
		c.Snapshots[i] = m
	} else {
		c.Snapshots = append(c.Snapshots, m)
	}
	c.sort()
	return nil
}

// Remove drops the snapshot with id and reports whether it was there.
func (c *Catalog) Remove(id string) bool {
	i := c.index(id)
	if i < 0 {
		return false
	}
	c.Snapshots = slices.Delete(c.Snapshots, i, i+1)
	return true
}

// Find returns the snapshot with id.
func (c *Catalog) Find(id string) (Manifest, bool) {
	if i := c.index(id); i >= 0 {
		return c.Snapshots[i], true
	}
	return Manifest{}, false
}

// Newest returns the newest snapshot for which keep returns true (any
// snapshot when keep is nil), e.g. the newest verified one.
func (c *Catalog) Newest(keep func(Manifest) bool) (Manifest, bool) {
	c.sort()
	for _, m := range c.Snapshots {
		if keep == nil || keep(m) {
			return m, true
		}
	}
	return Manifest{}, false
}

func (c *Catalog) index(id string) int {
	return slices.IndexFunc(c.Snapshots, func(m Manifest) bool { return m.ID == id })
}
