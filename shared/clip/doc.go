// Package clip shortens text for one-line messages (logs, mail subjects,
// check messages) without ever cutting a UTF-8 character in two.
package clip
