// Package functions_test checks template.yaml against the functions' code:
// every function has its Makefile build target, and each role allows
// exactly the AWS actions its code calls.
package functions_test

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// callActions maps the SDK calls a function's code makes to the IAM
// actions they need.
var callActions = []struct {
	call    *regexp.Regexp
	actions []string
}{
	{regexp.MustCompile(`\.GetObject\(`), []string{"s3:GetObject"}},
	{regexp.MustCompile(`\.PutObject\(`), []string{"s3:PutObject"}},
	{regexp.MustCompile(`\.DeleteObject\(`), []string{"s3:DeleteObject"}},
	{regexp.MustCompile(`\.ListObjectsV2\(`), []string{"s3:ListBucket"}},
	{regexp.MustCompile(`\.CopyObject\(`), []string{"s3:GetObject", "s3:PutObject"}},
	{regexp.MustCompile(`\.GetSecretValue\(`), []string{"secretsmanager:GetSecretValue"}},
	{regexp.MustCompile(`VersionId\s*=`), []string{"s3:GetObjectVersion"}}, // GetObject of a given version
	{regexp.MustCompile(`\.Publish\(`), []string{"sns:Publish"}},
	{regexp.MustCompile(`\.HeadObject\(`), []string{"s3:GetObject"}},
	{regexp.MustCompile(`\.CreateMultipartUpload\(`), []string{"s3:PutObject"}},
	{regexp.MustCompile(`\.UploadPartCopy\(`), []string{"s3:GetObject", "s3:PutObject"}},
	{regexp.MustCompile(`\.CompleteMultipartUpload\(`), []string{"s3:PutObject"}},
	{regexp.MustCompile(`\.AbortMultipartUpload\(`), []string{"s3:AbortMultipartUpload"}},
	{regexp.MustCompile(`ObjectLockRetainUntilDate:`), []string{"s3:PutObjectRetention"}},          // a copy or upload with Object Lock retention
	{regexp.MustCompile(`DeleteObjectInput\{[^}]*VersionId:`), []string{"s3:DeleteObjectVersion"}}, // delete of one version
}

// implied are actions a role may hold without a matching call, and why.
var implied = map[string]string{
	"s3:ListBucket": "without it S3 answers a GetObject of a missing key with 403, not 404",
}

// envRead finds variable names the code mentions as string literals (read
// through getenv directly or through a table of names).
var envRead = regexp.MustCompile(`"([A-Z][A-Z0-9_]+)"`)

type function struct {
	id      string
	dir     string // functions/<name>
	actions map[string]bool
	env     []string
}

func loadTemplate(t *testing.T) []function {
	t.Helper()
	data, err := os.ReadFile("../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	resources := get(root.Content[0], "Resources")
	var out []function
	for i := 0; i+1 < len(resources.Content); i += 2 {
		id, res := resources.Content[i].Value, resources.Content[i+1]
		if v := get(res, "Type"); v == nil || v.Value != "AWS::Serverless::Function" {
			continue
		}
		if bm := get(get(res, "Metadata"), "BuildMethod"); bm == nil || bm.Value != "makefile" {
			t.Errorf("%s: Metadata.BuildMethod is not makefile", id)
		}
		m := regexp.MustCompile(`(?m)^build-` + id + `:\n(?:\t.*\n)*?\t.*\./functions/([a-z0-9-]+)`).FindSubmatch(makefile)
		if m == nil {
			t.Errorf("%s: the Makefile has no build-%s target building ./functions/<name>", id, id)
			continue
		}
		f := function{id: id, dir: filepath.Join(".", string(m[1])), actions: map[string]bool{}}
		props := get(res, "Properties")
		for _, pol := range seq(get(props, "Policies")) {
			for _, st := range seq(get(pol, "Statement")) {
				for _, a := range scalars(get(st, "Action")) {
					f.actions[a] = true
				}
			}
		}
		vars := get(get(get(props, "Environment"), "Variables"))
		for j := 0; vars != nil && j+1 < len(vars.Content); j += 2 {
			f.env = append(f.env, vars.Content[j].Value)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		t.Fatal("no AWS::Serverless::Function in template.yaml")
	}
	return out
}

// code returns the function's non-test Go source.
func code(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	var b strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	if b.Len() == 0 {
		t.Fatalf("%s: no Go source", dir)
	}
	return b.String()
}

func TestRolesAllowExactlyWhatTheCodeCalls(t *testing.T) {
	for _, f := range loadTemplate(t) {
		t.Run(f.id, func(t *testing.T) {
			src := code(t, f.dir)
			need := map[string]bool{}
			for _, c := range callActions {
				if c.call.MatchString(src) {
					for _, a := range c.actions {
						need[a] = true
					}
				}
			}
			for a := range need {
				if !f.actions[a] {
					t.Errorf("the code needs %s, the role does not allow it", a)
				}
			}
			for a := range f.actions {
				if need[a] {
					continue
				}
				if why, ok := implied[a]; ok && need["s3:GetObject"] {
					t.Logf("%s allowed: %s", a, why)
					continue
				}
				t.Errorf("the role allows %s, which the code never calls", a)
			}
		})
	}
}

func TestTemplateSetsOnlyVariablesTheCodeReads(t *testing.T) {
	for _, f := range loadTemplate(t) {
		t.Run(f.id, func(t *testing.T) {
			read := map[string]bool{}
			for _, m := range envRead.FindAllStringSubmatch(code(t, f.dir), -1) {
				read[m[1]] = true
			}
			for _, v := range f.env {
				if !read[v] {
					t.Errorf("template sets %s, which %s never reads", v, f.dir)
				}
			}
		})
	}
}

func TestEveryFunctionDirIsInTheTemplate(t *testing.T) {
	inTemplate := map[string]bool{}
	for _, f := range loadTemplate(t) {
		inTemplate[f.dir] = true
	}
	mains, _ := filepath.Glob("*/main.go")
	sort.Strings(mains)
	for _, m := range mains {
		if dir := filepath.Dir(m); !inTemplate[dir] {
			t.Errorf("functions/%s has a main.go but no function in template.yaml", dir)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func get(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		n = next
	}
	return n
}

func seq(n *yaml.Node) []*yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.SequenceNode {
		return n.Content
	}
	return []*yaml.Node{n}
}

func scalars(n *yaml.Node) []string {
	var out []string
	for _, c := range seq(n) {
		if c.Kind == yaml.ScalarNode {
			out = append(out, c.Value)
		}
	}
	return out
}
