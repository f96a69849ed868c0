package functions_test

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestProbePolicyOnlyItsOwnPrefix reads the probe's managed policy: it may
// put, get and list under its own host prefix, and nothing else — no
// delete of snapshots, no other host's prefix, no vault.
func TestProbePolicyOnlyItsOwnPrefix(t *testing.T) {
	root := templateRoot(t)
	pol := get(root, "Resources", "ProbePolicy")
	if pol == nil || get(pol, "Type").Value != "AWS::IAM::ManagedPolicy" {
		t.Fatal("template.yaml has no ProbePolicy managed policy")
	}
	allowed := map[string]bool{"s3:PutObject": true, "s3:GetObject": true, "s3:ListBucket": true, "s3:AbortMultipartUpload": true}
	stmts := seq(get(pol, "Properties", "PolicyDocument", "Statement"))
	if len(stmts) == 0 {
		t.Fatal("ProbePolicy has no statements")
	}
	for i, st := range stmts {
		if e := get(st, "Effect"); e == nil || e.Value != "Allow" {
			continue
		}
		actions := scalars(get(st, "Action"))
		for _, a := range actions {
			if !allowed[a] {
				t.Errorf("statement %d allows %s; the probe may only put, get and list its prefix", i, a)
			}
			if strings.Contains(a, "*") || strings.HasPrefix(a, "s3:Delete") {
				t.Errorf("statement %d allows %s", i, a)
			}
		}
		for _, r := range resourceTexts(get(st, "Resource")) {
			switch {
			case strings.Contains(r, "Vault"):
				t.Errorf("statement %d reaches the vault: %s", i, r)
			case r == "${Bucket.Arn}/${ProbeHost}/*":
			case r == "Bucket.Arn": // ListBucket, limited by prefix below
				prefix := scalars(get(st, "Condition", "StringLike", "s3:prefix"))
				if len(prefix) != 1 || prefix[0] != "${ProbeHost}/*" {
					t.Errorf("statement %d lists the bucket without the host prefix condition: %v", i, prefix)
				}
			default:
				t.Errorf("statement %d names resource %q, outside ${Bucket.Arn}/${ProbeHost}/*", i, r)
			}
		}
	}
}

// resourceTexts renders !Sub and !GetAtt resources as their text.
func resourceTexts(n *yaml.Node) []string {
	var out []string
	for _, c := range seq(n) {
		out = append(out, c.Value)
	}
	return out
}

func templateRoot(t *testing.T) *yaml.Node {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal(mustRead(t, "../template.yaml"), &root); err != nil {
		t.Fatal(err)
	}
	return root.Content[0]
}
