package cli

import (
	"context"
	"errors"
)

func (a *app) run(_ context.Context, _ []string) int {
	a.errorf("run", errors.New("the daemon is not built into this binary yet"))
	return ExitError
}
