// Package filelock is the one flock(2) file lock of the project: a
// non-blocking TryLock for the probe's writers (backups, restores, the
// daemon) and a blocking Lock for tests' shared caches, each with an
// optional holder note that is only ever informative.
package filelock
