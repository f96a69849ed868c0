package testenv_test

import (
	"testing"

	"backstop/shared/testenv"
)

func TestLambdaSmoke(t *testing.T) {
	bin := testenv.BuildBootstrap(t, "backstop/shared/testenv/images/echofn")
	l := testenv.StartLambda(t, bin, testenv.LambdaOptions{})
	resp, fe := l.Invoke(t, []byte(`{"a":1}`))
	t.Logf("%s %v cold=%s", resp, fe, l.ColdStart())
	resp, fe = l.Invoke(t, []byte(`{"fail":"x"}`))
	t.Logf("%s %v", resp, fe)
	t.Log(l.Logs())
}
