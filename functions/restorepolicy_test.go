package functions_test

import (
	"slices"
	"strings"
	"testing"
)

// TestRestorePolicyOnlyItsHostsCommands reads RestoreFunction's policy: it
// lists and reads only under ${ProbeHost}/, writes only new command
// objects there (If-None-Match), and may not write the probe's status or
// result objects.
func TestRestorePolicyOnlyItsHostsCommands(t *testing.T) {
	fn := get(templateRoot(t), "Resources", "RestoreFunction", "Properties")
	var puts, denies []string
	for _, pol := range seq(get(fn, "Policies")) {
		for i, st := range seq(get(pol, "Statement")) {
			effect := get(st, "Effect").Value
			for _, a := range scalars(get(st, "Action")) {
				res := resourceTexts(get(st, "Resource"))
				if !strings.HasPrefix(a, "s3:") {
					continue
				}
				for _, r := range res {
					if r != "Bucket.Arn" && !strings.HasPrefix(r, "${Bucket.Arn}/${ProbeHost}/") {
						t.Errorf("statement %d: %s on %q, outside ${ProbeHost}/", i, a, r)
					}
				}
				switch {
				case effect == "Deny" && a == "s3:PutObject":
					denies = append(denies, res...)
				case a == "s3:PutObject":
					puts = append(puts, res...)
					if c := scalars(get(st, "Condition", "StringEquals", "s3:if-none-match")); len(c) != 1 || c[0] != "*" {
						t.Errorf("statement %d: PutObject without the s3:if-none-match \"*\" condition", i)
					}
				case a == "s3:ListBucket":
					if p := scalars(get(st, "Condition", "StringLike", "s3:prefix")); len(p) != 1 || p[0] != "${ProbeHost}/*" {
						t.Errorf("statement %d lists the bucket without the ${ProbeHost}/* prefix condition: %v", i, p)
					}
				}
			}
		}
	}
	if !slices.Equal(puts, []string{"${Bucket.Arn}/${ProbeHost}/commands/*.json"}) {
		t.Errorf("PutObject on %v, want only ${ProbeHost}/commands/*.json", puts)
	}
	for _, want := range []string{"${Bucket.Arn}/${ProbeHost}/commands/*.status.json", "${Bucket.Arn}/${ProbeHost}/commands/*.result.json"} {
		if !slices.Contains(denies, want) {
			t.Errorf("no Deny of PutObject on %s", want)
		}
	}
}

// TestBucketsDenyInsecureTransport: the main bucket and the vault (when
// the stack creates it) refuse every request without TLS.
func TestBucketsDenyInsecureTransport(t *testing.T) {
	res := get(templateRoot(t), "Resources")
	want := map[string]bool{"Bucket": false, "VaultBucket": false}
	for i := 0; i+1 < len(res.Content); i += 2 {
		r := res.Content[i+1]
		if get(r, "Type").Value != "AWS::S3::BucketPolicy" {
			continue
		}
		bucket := get(r, "Properties", "Bucket").Value
		for _, st := range seq(get(r, "Properties", "PolicyDocument", "Statement")) {
			if get(st, "Effect").Value == "Deny" && scalars(get(st, "Action"))[0] == "s3:*" &&
				get(st, "Condition", "Bool", "aws:SecureTransport").Value == "false" {
				want[bucket] = true
			}
		}
	}
	for b, ok := range want {
		if !ok {
			t.Errorf("%s has no Deny of s3:* without aws:SecureTransport", b)
		}
	}
}

// TestRestoreInvokedByOperatorRoleWithMFA: the restore function's resource
// policy names the operators' role, and the example role can be assumed
// only with MFA.
func TestRestoreInvokedByOperatorRoleWithMFA(t *testing.T) {
	res := get(templateRoot(t), "Resources")
	perm := get(res, "RestoreInvokeByOperators", "Properties")
	if perm == nil || get(perm, "FunctionName").Value != "RestoreFunction" || get(perm, "Action").Value != "lambda:InvokeFunction" {
		t.Fatal("no AWS::Lambda::Permission letting the operators' role invoke RestoreFunction")
	}
	if p := scalars(get(perm, "Principal")); !slices.Contains(p, "OperatorRoleArn") {
		t.Errorf("the permission's principal %v is not the OperatorRoleArn parameter (or the example role)", p)
	}
	mfa := false
	for _, st := range seq(get(res, "OperatorRole", "Properties", "AssumeRolePolicyDocument", "Statement")) {
		if c := get(st, "Condition", "Bool", "aws:MultiFactorAuthPresent"); c != nil && c.Value == "true" {
			mfa = true
		}
	}
	if !mfa {
		t.Error("OperatorRole can be assumed without MFA")
	}
}
