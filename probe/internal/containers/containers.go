// Package containers finds the app's containers the way Kamal names them:
// an exact name, else the newest running <name>-<version>.
package containers

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Lister is the part of the Docker client Find needs.
type Lister interface {
	ContainerList(ctx context.Context, o client.ContainerListOptions) (client.ContainerListResult, error)
}

// Find returns the container named exactly name (whatever its state), else
// the newest running container named name-*; found is false when neither
// exists.
func Find(ctx context.Context, d Lister, name string) (c container.Summary, found bool, err error) {
	list, err := d.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return c, false, fmt.Errorf("list containers: %w", err)
	}
	return Pick(list.Items, name)
}

// Pick applies Find's rule to a list already fetched.
func Pick(items []container.Summary, name string) (container.Summary, bool, error) {
	var prefixed []container.Summary
	for _, s := range items {
		for _, n := range s.Names {
			n = strings.TrimPrefix(n, "/")
			if n == name {
				return s, true, nil
			}
			if strings.HasPrefix(n, name+"-") && !strings.Contains(n, "/") && s.State == container.StateRunning {
				prefixed = append(prefixed, s)
			}
		}
	}
	if len(prefixed) == 0 {
		return container.Summary{}, false, nil
	}
	sort.Slice(prefixed, func(i, j int) bool {
		if prefixed[i].Created != prefixed[j].Created {
			return prefixed[i].Created > prefixed[j].Created
		}
		return prefixed[i].ID < prefixed[j].ID
	})
	return prefixed[0], true, nil
}
