// Package sendgridtest runs a strict loopback stand-in for SendGrid's
// v3 mail/send API, for tests of code that sends mail.
package sendgridtest
