// Package pgmeta reads facts about a PostgreSQL database that both the
// postgres check and snapshots record (the schema migration revision), and
// turns driver errors into clean, password-free causes.
package pgmeta
