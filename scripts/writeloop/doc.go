// Command writeloop is the restore benchmark's stand-in for an app that
// writes: it runs one INSERT at a time (-sql) in a live database, each time
// on a new connection (200 ms connect timeout, -timeout for the whole
// attempt), and records when writes failed. An attempt fails when it cannot
// connect, the statement fails or times out, or it writes no row: with
// -keys N the statement gets a random key in 1..N as $1, so an
// INSERT ... SELECT that looks up the app's data (as a real write does)
// fails while that data is missing.
//
// On SIGTERM or SIGINT it prints one JSON object: attempts, successes,
// failures, the longest continuous failure window (from the start of the
// first failed attempt to the start of the next successful one, or to the
// stop) and the longest gap between two committed writes (which also covers
// a write that blocked and then succeeded), with the distinct error messages
// and their counts. It says "writeloop: first insert committed" on stderr
// once a write went through.
//
// The DSN comes from the environment (WRITELOOP_DSN), not the command line,
// so the password does not show in ps:
//
//	WRITELOOP_DSN=postgres://... writeloop -keys 7000000 \
//	  -sql 'INSERT INTO bench_writes (aid) SELECT aid FROM pgbench_accounts WHERE aid = $1'
package main
