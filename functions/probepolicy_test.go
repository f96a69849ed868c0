package functions_test

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestProbePolicyOnlyItsOwnPrefix reads the probe's managed policy: it may
// put, get and list under its own host prefix, and nothing else — no
// delete of snapshots, no other host's prefix, no vault — and it is denied
// overwriting a snapshot object (PutObject without If-None-Match) and
// writing vault-catalog.json.
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
	var writeOnce, noCatalog bool
	for i, st := range stmts {
		if e := get(st, "Effect"); e != nil && e.Value == "Deny" {
			actions, res := scalars(get(st, "Action")), resourceTexts(get(st, "Resource"))
			if len(actions) != 1 || actions[0] != "s3:PutObject" || len(res) != 1 {
				t.Errorf("deny statement %d: actions %v resources %v, want one PutObject resource", i, actions, res)
				continue
			}
			switch res[0] {
			case "${Bucket.Arn}/${ProbeHost}/snapshots/*":
				null := scalars(get(st, "Condition", "Null", "s3:if-none-match"))
				op := scalars(get(st, "Condition", "Bool", "s3:ObjectCreationOperation"))
				writeOnce = len(null) == 1 && null[0] == "true" && len(op) == 1 && op[0] == "true"
				if !writeOnce {
					t.Errorf("deny statement %d on snapshots: condition Null s3:if-none-match %v, Bool s3:ObjectCreationOperation %v; want true, true", i, null, op)
				}
			case "${Bucket.Arn}/${ProbeHost}/vault-catalog.json":
				noCatalog = get(st, "Condition") == nil
				if !noCatalog {
					t.Errorf("deny statement %d on vault-catalog.json is conditional", i)
				}
			default:
				t.Errorf("deny statement %d names %q", i, res[0])
			}
			continue
		}
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
	if !writeOnce {
		t.Error("the probe may overwrite snapshot objects: no Deny of PutObject without If-None-Match on ${ProbeHost}/snapshots/*")
	}
	if !noCatalog {
		t.Error("the probe may write ${ProbeHost}/vault-catalog.json (only the off-site function may)")
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
