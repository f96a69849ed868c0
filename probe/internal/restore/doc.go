// Package restore puts a snapshot back: the database into a scratch
// database swapped in by rename, the data directory extracted beside the
// live one and swapped by rename, the app's code rolled back, readiness
// polled, and everything reverted on failure.
package restore
