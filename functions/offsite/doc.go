// Command offsite is the vault Lambda function: it copies each finished
// snapshot server-side into an Object Lock vault bucket, prunes vault
// copies past the GFS policy, and alerts when a host's vaulted snapshot or
// heartbeat is overdue (the dead man's switch).
package main
