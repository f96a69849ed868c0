// Command alert is the alert mailer Lambda function: it turns alert events
// (S3 event objects, direct invocations, CloudWatch alarms over SNS) into
// e-mails through SendGrid, once per dedup_key, with storms folded into digests.
package main
