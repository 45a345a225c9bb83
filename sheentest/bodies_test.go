package sheentest_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	sheen "github.com/sheenapps/sheen-go"
	"github.com/sheenapps/sheen-go/openapi"
	"github.com/sheenapps/sheen-go/sheentest"
)

// bodyCase is a request body sent to a route, and what the fake answers.
type bodyCase struct {
	name, path, body string
	// want is the message of the 400 FST_ERR_VALIDATION refusal, "" when
	// the body is accepted.
	want string
	// deployedIgnores marks a body refused in v2.1 mode that the deployed
	// worker takes, because it ignores the field (worker-api.md 5).
	deployedIgnores bool
}

func bodyCases(projectID, versionID string) []bodyCase {
	const (
		check   = "/v1/billing/check-sufficient"
		batch   = "/v1/billing/check-sufficient-batch"
		create  = "/v1/create-preview-for-new-project"
		update  = "/v1/update-project"
		rollbck = "/v1/versions/rollback"
	)
	p, v := `"projectId":"`+projectID+`"`, `"targetVersionId":"`+versionID+`"`
	ops11 := strings.Repeat(`{"operation":"plan","estimate_seconds":1},`, 11)
	return []bodyCase{
		{"check: whole", check, `{"userId":"u1","operationType":"main_build","projectSize":"small","isUpdate":false}`, "", false},
		{"check: no projectSize or isUpdate", check, `{"userId":"u1","operationType":"main_build"}`, "body must have required property 'projectSize'", false},
		{"check: no isUpdate", check, `{"userId":"u1","operationType":"main_build","projectSize":"small"}`, "body must have required property 'isUpdate'", false},
		{"check: unknown field", check, `{"userId":"u1","operationType":"main_build","projectSize":"small","isUpdate":false,"bytes":123456}`, "body must NOT have additional properties", false},
		{"check: empty userId", check, `{"userId":"","operationType":"main_build","projectSize":"small","isUpdate":false}`, "body/userId must NOT have fewer than 1 characters", false},
		{"check: unknown operation", check, `{"userId":"u1","operationType":"painting","projectSize":"small","isUpdate":false}`, "body/operationType must be equal to one of the allowed values", false},
		{"check: byte count as size", check, `{"userId":"u1","operationType":"main_build","projectSize":4096,"isUpdate":false}`, "body/projectSize must be string", false},
		{"check: isUpdate as text", check, `{"userId":"u1","operationType":"main_build","projectSize":"small","isUpdate":"false"}`, "body/isUpdate must be boolean", false},
		{"check: not an object", check, `["u1"]`, "body must be object", false},
		{"check: no body", check, ``, "body must be object", false},

		{"batch: whole", batch, `{"userId":"u1","operations":[{"operation":"build","estimate_seconds":60},{"operation":"export","estimate_seconds":0.5}]}`, "", false},
		{"batch: negative estimate", batch, `{"userId":"u1","operations":[{"operation":"build","estimate_seconds":-50}]}`, "body/operations/0/estimate_seconds must be >= 0", false},
		{"batch: estimate as text", batch, `{"userId":"u1","operations":[{"operation":"build","estimate_seconds":"60"}]}`, "body/operations/0/estimate_seconds must be number", false},
		{"batch: no estimate", batch, `{"userId":"u1","operations":[{"operation":"build"}]}`, "body/operations/0 must have required property 'estimate_seconds'", false},
		{"batch: unknown operation", batch, `{"userId":"u1","operations":[{"operation":"build","estimate_seconds":1},{"operation":"deploy","estimate_seconds":1}]}`, "body/operations/1/operation must be equal to one of the allowed values", false},
		{"batch: unknown field in an operation", batch, `{"userId":"u1","operations":[{"operation":"build","estimate_seconds":1,"minutes":1}]}`, "body/operations/0 must NOT have additional properties", false},
		{"batch: no operations", batch, `{"userId":"u1","operations":[]}`, "body/operations must NOT have fewer than 1 items", false},
		{"batch: 11 operations", batch, `{"userId":"u1","operations":[` + strings.TrimSuffix(ops11, ",") + `]}`, "body/operations must NOT have more than 10 items", false},
		{"batch: no user", batch, `{"operations":[{"operation":"build","estimate_seconds":1}]}`, "body must have required property 'userId'", false},

		{"create: whole", create, `{"userId":"u2","prompt":"z","framework":"vue","templateFiles":{"src/a.js":"x"},"metadata":{"n":1}}`, "", false},
		{"create: no prompt", create, `{"userId":"u2"}`, "body must have required property 'prompt'", false},
		{"create: empty prompt", create, `{"userId":"u2","prompt":""}`, "body/prompt must NOT have fewer than 1 characters", false},
		{"create: unknown framework", create, `{"userId":"u2","prompt":"z","framework":"angular"}`, "body/framework must be equal to one of the allowed values", false},
		{"create: unknown field", create, `{"userId":"u2","prompt":"z","files":[]}`, "body must NOT have additional properties", false},
		{"create: non-string template file", create, `{"userId":"u2","prompt":"z","templateFiles":{"src/a.js":42}}`, "body/templateFiles/src~1a.js must be string", true},
		{"create: metadata not an object", create, `{"userId":"u2","prompt":"z","metadata":"x"}`, "body/metadata must be object", true},

		{"update: whole", update, `{"userId":"u1",` + p + `,"prompt":"y","framework":"nextjs"}`, "", false},
		{"update: unknown framework", update, `{"userId":"u1",` + p + `,"prompt":"y","framework":"angular"}`, "body/framework must be equal to one of the allowed values", false},
		{"update: no project", update, `{"userId":"u1","prompt":"y"}`, "body must have required property 'projectId'", false},
		{"update: unknown field", update, `{"userId":"u1",` + p + `,"prompt":"y","templateFiles":{}}`, "body must NOT have additional properties", false},

		{"rollback: whole", rollbck, `{` + p + `,` + v + `,"userId":"u1"}`, "", false},
		{"rollback: no target", rollbck, `{` + p + `,"userId":"u1"}`, "body must have required property 'targetVersionId'", false},
		{"rollback: unknown field", rollbck, `{` + p + `,` + v + `,"userId":"u1","force":true}`, "body must NOT have additional properties", false},
	}
}

// The fake refuses a body exactly when the contract (openapi/worker-api.yaml)
// does, with the deployed worker's refusal (400 FST_ERR_VALIDATION and Ajv's
// message), except for the fields worker-api.md says the deployed worker
// ignores; the SDK's own requests keep passing (TestFlowsKeepTheContract).
func TestServerRefusesBodiesTheContractRefuses(t *testing.T) {
	doc := mustLoad(t)
	for _, scheme := range []sheen.Signing{sheen.SigningBodyPath, sheen.SigningDual} {
		t.Run(scheme.String(), func(t *testing.T) {
			deployed := scheme != sheen.SigningBodyPath
			srv := sheentest.NewServer(sheentest.WithTest(t), sheentest.WithSigning(scheme))
			var (
				mu       sync.Mutex
				contract []string // the contract's complaints about the last body
			)
			tr := &openapi.Transport{Contract: doc, BaseURL: srv.URL, Signing: scheme, Exempt: []string{sheentest.RouteStore},
				Report: func(err error) {
					var v *openapi.Violation
					if errors.As(err, &v) && v.Status == 0 && v.In == "body" {
						mu.Lock()
						contract = append(contract, v.Error())
						mu.Unlock()
					}
				}}
			c := client(t, srv, sheen.WithHTTPClient(&http.Client{Transport: tr}), sheen.WithRetry(sheen.RetryConfig{MaxAttempts: 1}))
			ctx := t.Context()
			b, err := c.Builds.CreatePreview(ctx, sheen.CreatePreviewRequest{UserID: "u1", Prompt: "x"})
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range bodyCases(b.ProjectID, srv.LatestVersion(b.ProjectID)) {
				mu.Lock()
				contract = nil
				mu.Unlock()
				var in any
				if tc.body != "" {
					in = jsonBody([]byte(tc.body))
				}
				err := c.Do(ctx, http.MethodPost, tc.path, in, nil, sheen.WithIdempotencyKey("key-"+tc.name))
				mu.Lock()
				refusedByContract := len(contract) > 0
				mu.Unlock()

				want := tc.want
				if deployed && tc.deployedIgnores {
					want = ""
				}
				var apiErr *sheen.APIError
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: refused: %v", tc.name, err)
				case want != "" && (!errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Code != "FST_ERR_VALIDATION" || apiErr.Message != want):
					t.Errorf("%s: got %v, want 400 FST_ERR_VALIDATION %q", tc.name, err, want)
				}
				if refusedByContract != (tc.want != "") {
					t.Errorf("%s: the contract refuses it: %v (%q); the case says %v", tc.name, refusedByContract, contract, tc.want != "")
				}
			}
		})
	}
}
