// Package cmdpoll polls the store for signed restore commands addressed to
// this host, verifies them, claims each one once and runs it through the
// restore engine, reporting status and result beside the command.
package cmdpoll
