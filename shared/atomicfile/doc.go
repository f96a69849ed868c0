// Package atomicfile replaces files atomically (temp file, fsync, rename,
// fsync of the directory), so readers and crashes see the old or the new
// content, never a torn write.
package atomicfile
