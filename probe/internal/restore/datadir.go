package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// The data directory's restore states, all beside the live directory in
// its parent (so on its filesystem, where rename is atomic):
//
//	<live>.restore-<txn>  the snapshot being extracted (StageDir)
//	<live>.pre-<txn>      the live directory as it was before the swap (PreDir)
//	<live>.failed-<txn>   the restored directory, moved aside by a revert (FailedDir)
const (
	stageInfix  = ".restore-"
	preInfix    = ".pre-"
	failedInfix = ".failed-"
)

// ErrNotSwapped is what RevertDir returns (wrapped) when there is no
// pre-restore directory: the swap never happened or was already reverted.
// Nothing was changed.
var ErrNotSwapped = errors.New("no pre-restore directory: never swapped or already reverted, nothing to revert")

// StageDir is where a restore extracts the data directory before the
// swap: <live>.restore-<txn>, beside live. SwapDir checks that it is on
// live's filesystem.
func StageDir(live, txn string) string { return filepath.Clean(live) + stageInfix + txn }

// PreDir is where SwapDir keeps the live directory it replaced:
// <live>.pre-<txn>.
func PreDir(live, txn string) string { return filepath.Clean(live) + preInfix + txn }

// FailedDir is where RevertDir moves the restored directory it takes out:
// <live>.failed-<txn>.
func FailedDir(live, txn string) string { return filepath.Clean(live) + failedInfix + txn }

// checkTxn refuses a txn id that could not be one path component suffix.
func checkTxn(txn string) error {
	if txn == "" || txn == "." || txn == ".." {
		return fmt.Errorf("txn id %q: not a name", txn)
	}
	for _, c := range txn {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("txn id %q: only letters, digits, '-', '_' and '.'", txn)
		}
	}
	return nil
}

// CheckSwappable tells, before anything is extracted, whether live can be
// swapped by rename: it must be an existing directory, not a symbolic link
// (configure the path it resolves to) and not a mount point (a mount point
// cannot be renamed, and the staging directory beside it would be on
// another filesystem).
func CheckSwappable(live string) error {
	live = filepath.Clean(live)
	_, err := swappable(live)
	return err
}

func swappable(live string) (fs.FileInfo, error) {
	fi, err := os.Lstat(live)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", live, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("data dir %s is a symbolic link: configure the directory it points to", live)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("data dir %s is not a directory", live)
	}
	parent, err := os.Stat(filepath.Dir(live))
	if err != nil {
		return nil, fmt.Errorf("data dir %s: parent: %w", live, err)
	}
	if devOf(parent) != devOf(fi) {
		return nil, fmt.Errorf("data dir %s is a mount point: it cannot be swapped by rename (restore needs its parent's filesystem to hold it)", live)
	}
	return fi, nil
}

func devOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev)
	}
	return 0
}

// SwapDir puts the extracted directory staged in place of live: it
// renames live to PreDir(live, txn), then staged to live, and fsyncs the
// parent. staged must be a directory on live's filesystem and PreDir must
// not exist yet. Before the renames staged's root takes live's permission
// bits (and, when running as root, owner), which an archive does not
// record.
//
// Live is absent for the instant between the two renames. A process that
// holds the old directory open (or has it as its working directory) keeps
// using it under its new name: the app is restarted by the code step.
//
// If the second rename fails, the first is undone and live is as before.
// If the process dies between the two renames (or the undo fails), live is
// missing and PreDir holds it: RevertDir puts it back.
func SwapDir(live, staged, txn string) error {
	live, staged = filepath.Clean(live), filepath.Clean(staged)
	if err := checkTxn(txn); err != nil {
		return fmt.Errorf("swap %s: %w", live, err)
	}
	fi, err := swappable(live)
	if err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	sfi, err := os.Lstat(staged)
	if err != nil {
		return fmt.Errorf("swap %s: staged directory: %w", live, err)
	}
	if !sfi.IsDir() {
		return fmt.Errorf("swap %s: staged %s is not a directory", live, staged)
	}
	if devOf(sfi) != devOf(fi) {
		return fmt.Errorf("swap %s: staged %s is on another filesystem: rename cannot swap them", live, staged)
	}
	pre := PreDir(live, txn)
	if _, err := os.Lstat(pre); err == nil {
		return fmt.Errorf("swap %s: %s already exists", live, pre)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("swap %s: %w", live, err)
	}
	if err := copyRootAttrs(fi, sfi, staged); err != nil {
		return fmt.Errorf("swap %s: %w", live, err)
	}
	if err := os.Rename(live, pre); err != nil {
		return fmt.Errorf("swap %s: move live aside: %w", live, err)
	}
	if err := os.Rename(staged, live); err != nil {
		if uerr := os.Rename(pre, live); uerr != nil {
			return fmt.Errorf("swap %s: move %s in: %w; and putting the live directory back from %s failed: %v (RevertDir puts it back)", live, staged, err, pre, uerr)
		}
		_ = syncParentDir(live)
		return fmt.Errorf("swap %s: move %s in: %w (live directory put back)", live, staged, err)
	}
	if err := syncParentDir(live); err != nil {
		return fmt.Errorf("swap %s: swapped, but %w", live, err)
	}
	return nil
}

// copyRootAttrs gives staged's root live's permission bits and, when
// running as root, its owner, changing only what differs.
func copyRootAttrs(live, staged fs.FileInfo, stagedPath string) error {
	keep := fs.ModePerm | fs.ModeSetgid | fs.ModeSticky
	if want := live.Mode() & keep; staged.Mode()&keep != want {
		if err := os.Chmod(stagedPath, want); err != nil {
			return err
		}
	}
	l, lok := live.Sys().(*syscall.Stat_t)
	s, sok := staged.Sys().(*syscall.Stat_t)
	if os.Geteuid() == 0 && lok && sok && (l.Uid != s.Uid || l.Gid != s.Gid) {
		if err := os.Lchown(stagedPath, int(l.Uid), int(l.Gid)); err != nil {
			return err
		}
		if live.Mode()&fs.ModeSetgid != 0 { // chown may have cleared it
			return os.Chmod(stagedPath, live.Mode()&keep)
		}
	}
	return nil
}

// RevertDir undoes SwapDir for txn: when PreDir(live, txn) exists it moves
// the current live directory (the restored one), if any, to
// FailedDir(live, txn) and renames PreDir back to live, then fsyncs the
// parent. It also finishes a swap or a revert that was cut short (live
// missing, PreDir present).
//
// It is idempotent: when PreDir does not exist (the swap never happened,
// or this revert already ran) it changes nothing and returns an error
// wrapping ErrNotSwapped. It refuses to run when live and FailedDir both
// exist beside PreDir, a state no swap or revert leaves.
func RevertDir(live, txn string) error {
	live = filepath.Clean(live)
	if err := checkTxn(txn); err != nil {
		return fmt.Errorf("revert %s: %w", live, err)
	}
	pre, failed := PreDir(live, txn), FailedDir(live, txn)
	pfi, err := os.Lstat(pre)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("revert %s txn %s: %w", live, txn, ErrNotSwapped)
	}
	if err != nil {
		return fmt.Errorf("revert %s: %w", live, err)
	}
	if !pfi.IsDir() {
		return fmt.Errorf("revert %s: %s is not a directory", live, pre)
	}
	if _, err := os.Lstat(live); err == nil {
		if _, err := os.Lstat(failed); err == nil {
			return fmt.Errorf("revert %s: both it and %s exist beside %s: move one away by hand", live, failed, pre)
		}
		if err := os.Rename(live, failed); err != nil {
			return fmt.Errorf("revert %s: move the restored directory aside: %w", live, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("revert %s: %w", live, err)
	}
	if err := os.Rename(pre, live); err != nil {
		return fmt.Errorf("revert %s: put %s back: %w", live, pre, err)
	}
	if err := syncParentDir(live); err != nil {
		return fmt.Errorf("revert %s: reverted, but %w", live, err)
	}
	return nil
}

// PruneDirs removes restore states beside live that are no longer needed
// and returns the paths it removed. Leftover staging directories
// (<live>.restore-*) are always removed, except the active txn's. Pre-
// and failed directories are grouped by txn; the keep newest txns keep
// theirs (the active txn counts as one and is never removed), the others
// are removed. "Newest" is by the directories' change time, which the
// swap's or revert's rename set; equal times order by txn id.
//
// When live itself is missing (a swap or revert cut short) it removes
// nothing and fails: the pre-restore directory may be the only copy, and
// RevertDir is what puts it back. A failure to remove one directory does
// not stop the others; the errors are joined.
func PruneDirs(live string, keep int, active string) ([]string, error) {
	live = filepath.Clean(live)
	if _, err := os.Lstat(live); err != nil {
		return nil, fmt.Errorf("prune beside %s: live directory: %w (revert first)", live, err)
	}
	parent, base := filepath.Dir(live), filepath.Base(live)
	ents, err := os.ReadDir(parent)
	if err != nil {
		return nil, fmt.Errorf("prune beside %s: %w", live, err)
	}
	type txnState struct {
		id     string
		paths  []string
		newest int64 // change time, ns
	}
	var stale []string
	byTxn := map[string]*txnState{}
	for _, e := range ents {
		name := e.Name()
		var txn string
		var staging bool
		switch {
		case strings.HasPrefix(name, base+stageInfix):
			txn, staging = name[len(base+stageInfix):], true
		case strings.HasPrefix(name, base+preInfix):
			txn = name[len(base+preInfix):]
		case strings.HasPrefix(name, base+failedInfix):
			txn = name[len(base+failedInfix):]
		default:
			continue
		}
		if checkTxn(txn) != nil {
			continue
		}
		p := filepath.Join(parent, name)
		if staging {
			if txn != active {
				stale = append(stale, p)
			}
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			continue // gone meanwhile
		}
		s := byTxn[txn]
		if s == nil {
			s = &txnState{id: txn}
			byTxn[txn] = s
		}
		s.paths = append(s.paths, p)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			s.newest = max(s.newest, st.Ctim.Nano())
		}
	}
	txns := make([]*txnState, 0, len(byTxn))
	for _, s := range byTxn {
		txns = append(txns, s)
	}
	sort.Slice(txns, func(i, j int) bool {
		if txns[i].newest != txns[j].newest {
			return txns[i].newest > txns[j].newest
		}
		return txns[i].id > txns[j].id
	})
	kept := 0
	if byTxn[active] != nil {
		kept = 1
	}
	for _, s := range txns {
		if s.id == active {
			continue
		}
		if kept < keep {
			kept++
			continue
		}
		stale = append(stale, s.paths...)
	}
	var removed []string
	var errs []error
	for _, p := range stale {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("prune %s: %w", p, err))
			continue
		}
		removed = append(removed, p)
	}
	if len(removed) > 0 {
		if err := syncParentDir(live); err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// syncParentDir fsyncs the directory holding p, making renames in it
// durable.
func syncParentDir(p string) error {
	dir := filepath.Dir(p)
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
