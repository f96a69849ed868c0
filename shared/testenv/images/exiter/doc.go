// Command exiter is a test container that exits with a chosen code after a
// chosen delay, for exited and restart-looping containers.
//
//	/exiter -code 3 -after 200ms    (or env EXIT_CODE, EXIT_AFTER)
//
// It exits early, with the same code, on SIGTERM or SIGINT.
package main
