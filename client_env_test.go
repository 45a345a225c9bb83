package sheen

import (
	"os"
	"strings"
	"testing"
)

// With the variables unset (not just empty), NewWorkerClientFromEnv names
// the variable to set, never WithSecret, an option the caller did not use;
// an option given to it is still named as that option.
func TestNewWorkerClientFromEnvNamesTheVariable(t *testing.T) {
	for _, name := range []string{EnvBaseURL, EnvSecret, EnvSecretV2, EnvSigning, EnvGenerateURL, EnvGenerateSecret} {
		t.Setenv(name, "") // restored after the test
		os.Unsetenv(name)
	}
	_, err := NewWorkerClientFromEnv()
	if err == nil || !strings.Contains(err.Error(), "sheen: WORKER_SHARED_SECRET is not set") || strings.Contains(err.Error(), "WithSecret") {
		t.Errorf("no secret in the environment: %v", err)
	}
	_, err = NewWorkerClientFromEnv(WithSecret("too-short-secret"))
	if err == nil || !strings.Contains(err.Error(), "WithSecret is 16 characters") {
		t.Errorf("a secret given as an option: %v", err)
	}
	_, err = NewWorkerClientFromEnv(WithSecret(testSecret), WithBaseURL("http://worker.example.com"))
	if err == nil || !strings.Contains(err.Error(), "WithBaseURL uses plain http://") {
		t.Errorf("a base URL given as an option: %v", err)
	}
	if c, err := NewWorkerClientFromEnv(WithSecret(testSecret)); err != nil || c.BaseURL() != DefaultBaseURL {
		t.Errorf("the default base URL: %v %v", c, err)
	}
	// NewWorkerClient still names its option.
	if _, err := NewWorkerClient(); err == nil || !strings.Contains(err.Error(), "WithSecret is not set") {
		t.Errorf("NewWorkerClient: %v", err)
	}
}
