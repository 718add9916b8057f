package api

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/platform/health"
	"github.com/herald-notify/herald/region/deliverylog"
	"github.com/herald-notify/herald/region/inbox"
	"github.com/herald-notify/herald/region/notify"
	"github.com/herald-notify/herald/region/prefs"
	"github.com/herald-notify/herald/region/receipts"
	"github.com/herald-notify/herald/region/templates"
	"github.com/herald-notify/herald/region/users"
	"github.com/herald-notify/herald/region/webhooks"
)

// The tests in this file keep docs/openapi.yaml honest: the document must be valid OpenAPI,
// describe exactly the routes the server mounts, list exactly the error codes of errors.go,
// carry the patterns and limits of decode.go and resources.go, and judge sample bodies as the
// server does.

const openapiPath = "../../docs/openapi.yaml"

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile(openapiPath)
	if err != nil {
		t.Fatalf("loading %s: %v", openapiPath, err)
	}
	return doc
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := loadOpenAPI(t)
	// Validate checks the structure, the schemas, the path templates against their parameters,
	// and every example against its schema.
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not valid OpenAPI: %v", openapiPath, err)
	}
}

// ginPathRE matches gin's path parameters (:name and *name).
var ginPathRE = regexp.MustCompile(`[:*]([A-Za-z0-9_]+)`)

func openAPIPath(ginPath string) string { return ginPathRE.ReplaceAllString(ginPath, "{$1}") }

func testEngine(s *Server) *gin.Engine {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	s.Register(r) // Register only mounts handlers: a Server without dependencies will do.
	return r
}

// documented lists "METHOD path" for every operation in the document whose path has prefix.
func documented(doc *openapi3.T, prefix string, wantPrefix bool) map[string]*openapi3.Operation {
	out := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		if strings.HasPrefix(path, prefix) != wantPrefix {
			continue
		}
		for method, op := range item.Operations() {
			out[method+" "+path] = op
		}
	}
	return out
}

func TestOpenAPIDocumentsEveryRouteAndNoOther(t *testing.T) {
	doc := loadOpenAPI(t)
	docOps := documented(doc, "/v1/", true)
	maps.Copy(docOps, documented(doc, "/internal/", true))
	routes := testEngine(&Server{}).Routes()
	if len(routes) == 0 {
		t.Fatal("Register mounted no routes")
	}
	mounted := map[string]bool{}
	for _, r := range routes {
		key := r.Method + " " + openAPIPath(r.Path)
		mounted[key] = true
		op := docOps[key]
		if op == nil {
			t.Errorf("route %s %s (%s) is not documented in %s", r.Method, r.Path, key, openapiPath)
			continue
		}
		if strings.HasPrefix(r.Path, "/internal/") || strings.HasPrefix(r.Path, "/v1/unsubscribe/") || strings.HasPrefix(r.Path, "/v1/receipts/") {
			checkInternalOperation(t, key, op) // no app header: the app is in the token
			continue
		}
		checkOperation(t, doc, key, op)
	}
	for key := range docOps {
		if !mounted[key] {
			t.Errorf("%s documents %s, which Register does not mount", openapiPath, key)
		}
	}
}

// checkOperation checks what every /v1 operation shares: the app header, the path parameters
// of its template, and the responses of the authentication middleware and of unavailability.
func checkOperation(t *testing.T, doc *openapi3.T, key string, op *openapi3.Operation) {
	t.Helper()
	path := strings.SplitN(key, " ", 2)[1]
	params := map[string]*openapi3.Parameter{}
	for _, p := range append(slices.Clone(doc.Paths.Find(path).Parameters), op.Parameters...) {
		params[p.Value.In+":"+p.Value.Name] = p.Value
	}
	if p := params["header:"+AppHeader]; p == nil || !p.Required {
		t.Errorf("%s: the %s header is not documented as required", key, AppHeader)
	}
	for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
		if p := params["path:"+m[1]]; p == nil || !p.Required {
			t.Errorf("%s: path parameter %s is not documented", key, m[1])
		}
	}
	for _, status := range []int{400, 401, 503} {
		if op.Responses.Status(status) == nil {
			t.Errorf("%s: response %d is not documented", key, status)
		}
	}
	if r := op.Responses.Status(503); r != nil && r.Value.Headers["Retry-After"] == nil {
		t.Errorf("%s: the 503 response does not document Retry-After", key)
	}
	if op.Security == nil || len(*op.Security) == 0 {
		t.Errorf("%s: the internal token is not documented", key)
	}
}

// checkInternalOperation checks an /internal operation: the internal token and the responses
// of the token check and of unavailability, and no app header (these routes are not app-scoped).
func checkInternalOperation(t *testing.T, key string, op *openapi3.Operation) {
	t.Helper()
	for _, p := range op.Parameters {
		if p.Value != nil && p.Value.Name == AppHeader {
			t.Errorf("%s: an internal route documents the %s header", key, AppHeader)
		}
	}
	for _, status := range []int{400, 401, 503} {
		if op.Responses.Status(status) == nil {
			t.Errorf("%s: response %d is not documented", key, status)
		}
	}
	if op.Security == nil || len(*op.Security) == 0 {
		t.Errorf("%s: the internal token is not documented", key)
	}
}

// TestOpenAPIHealthRoutesMatchNewRouter compares the document's paths outside /v1 with the
// routes every region serves besides its API: the ones health.Mount adds (region.NewRouter
// mounts exactly those; the region package imports this one, so it cannot be called here).
func TestOpenAPIHealthRoutesMatchNewRouter(t *testing.T) {
	doc := loadOpenAPI(t)
	gin.SetMode(gin.TestMode)
	engine := gin.New()
	health.New(nil).Mount(engine)
	mounted := map[string]bool{}
	for _, r := range engine.Routes() {
		mounted[r.Method+" "+openAPIPath(r.Path)] = true
	}
	if len(mounted) == 0 {
		t.Fatal("health.Mount mounted no route")
	}
	docOps := documented(doc, "/v1/", false)
	for key := range documented(doc, "/internal/", true) {
		delete(docOps, key) // mounted by Register, checked with the /v1 routes
	}
	for key := range mounted {
		if docOps[key] == nil {
			t.Errorf("region.NewRouter mounts %s, which %s does not document", key, openapiPath)
		}
	}
	for key, op := range docOps {
		if !mounted[key] {
			t.Errorf("%s documents %s, which region.NewRouter does not mount", openapiPath, key)
		}
		if op.Security == nil || len(*op.Security) != 0 {
			t.Errorf("%s: a health endpoint must be documented without security (security: [])", key)
		}
	}
}

// errorCodes are the Code* constants of errors.go. Add a new code here and to the ErrorCode
// schema of the document.
var errorCodes = []string{
	CodeMalformedJSON, CodeUnknownField, CodePayloadTooLarge, CodeInvalidField, CodeMissingField,
	CodeConflictingFields, CodeInvalidType, CodeUnknownTemplate, CodeTemplateTypeMismatch,
	CodeMissingVariable, CodeInvalidTemplate, CodeTooManyRecipients, CodeInvalidChannel,
	CodeInvalidSendAt, CodeDuplicateRequest, CodeMissingApp, CodeUnauthenticated, CodeNotFound,
	CodeUnavailable, CodeDuplicateField, CodeNotResident, CodeDeadlineExceeded, CodeInvalidTimeout, CodeEndpointDisabled, CodeCredentialRefused,
}

func TestOpenAPIErrorCodesAreTheCodeConstants(t *testing.T) {
	doc := loadOpenAPI(t)
	var documented []string
	s := schema(t, doc, "ErrorCode")
	for _, v := range s.Enum {
		documented = append(documented, fmt.Sprint(v))
	}
	want := slices.Sorted(slices.Values(errorCodes))
	slices.Sort(documented)
	if !slices.Equal(documented, want) {
		t.Fatalf("ErrorCode enum in %s:\n  %v\nCode* constants of errors.go:\n  %v", openapiPath, documented, want)
	}
	for _, code := range errorCodes {
		if !strings.Contains(s.Description, "`"+code+"`") {
			t.Errorf("the ErrorCode description does not describe %s", code)
		}
	}
}

func schema(t *testing.T, doc *openapi3.T, name string) *openapi3.Schema {
	t.Helper()
	ref := doc.Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		t.Fatalf("%s has no schema %s", openapiPath, name)
	}
	return ref.Value
}

func property(t *testing.T, doc *openapi3.T, schemaName, prop string) *openapi3.Schema {
	t.Helper()
	p := schema(t, doc, schemaName).Properties[prop]
	if p == nil || p.Value == nil {
		t.Fatalf("schema %s has no property %s", schemaName, prop)
	}
	return p.Value
}

func parameter(t *testing.T, doc *openapi3.T, name string) *openapi3.Schema {
	t.Helper()
	p := doc.Components.Parameters[name]
	if p == nil || p.Value == nil || p.Value.Schema == nil {
		t.Fatalf("%s has no parameter %s", openapiPath, name)
	}
	return p.Value.Schema.Value
}

// orEmpty is re's pattern accepting the empty string too, as the document writes it for fields
// whose empty value means "absent".
func orEmpty(re *regexp.Regexp) string {
	inner := strings.TrimSuffix(strings.TrimPrefix(re.String(), "^"), "$")
	return "^(" + inner + ")?$"
}

func TestOpenAPIPatternsAndLimitsAreTheCode(t *testing.T) {
	doc := loadOpenAPI(t)
	patterns := []struct {
		where, got, want string
	}{
		{"parameter AppHeader", parameter(t, doc, "AppHeader").Pattern, idRE.String()},
		{"parameter TemplateID", parameter(t, doc, "TemplateID").Pattern, idRE.String()},
		{"parameter UserID", parameter(t, doc, "UserID").Pattern, idRE.String()},
		{"parameter DeviceID", parameter(t, doc, "DeviceID").Pattern, idRE.String()},
		{"UserRef.user_id", property(t, doc, "UserRef", "user_id").Pattern, idRE.String()},
		{"parameter Topic", parameter(t, doc, "Topic").Pattern, topicRE.String()},
		{"UserIDValue", schema(t, doc, "UserIDValue").Pattern, idRE.String()},
		{"SendRequest.category", property(t, doc, "SendRequest", "category").Pattern, orEmpty(categoryRE)},
		{"SendRequest.template_id", property(t, doc, "SendRequest", "template_id").Pattern, orEmpty(idRE)},
		{"SendRequest.topic", property(t, doc, "SendRequest", "topic").Pattern, topicRE.String()},
		{"TemplateRequest.category", property(t, doc, "TemplateRequest", "category").Pattern, categoryRE.String()},
		{"Template.id", property(t, doc, "Template", "id").Pattern, idRE.String()},
		{"UserRequest.phone", property(t, doc, "UserRequest", "phone").Pattern, orEmpty(phoneRE)},
		{"APNsDeviceRequest.token", property(t, doc, "APNsDeviceRequest", "token").Pattern, apnsTokenRE.String()},
		{"FCMDeviceRequest.token", property(t, doc, "FCMDeviceRequest", "token").Pattern, fcmTokenRE.String()},
		{"APNsDeviceRequest.device_id", property(t, doc, "APNsDeviceRequest", "device_id").Pattern, idRE.String()},
		{"FCMDeviceRequest.device_id", property(t, doc, "FCMDeviceRequest", "device_id").Pattern, idRE.String()},
	}
	for _, p := range patterns {
		if p.got != p.want {
			t.Errorf("%s: pattern %q in the document, %q in the code", p.where, p.got, p.want)
		}
	}
	limits := []struct {
		where string
		got   *uint64
		want  int
	}{
		{"SendRequest.recipients maxItems", property(t, doc, "SendRequest", "recipients").MaxItems, MaxRecipients},
		{"SendRequest.metadata maxProperties", property(t, doc, "SendRequest", "metadata").MaxProps, maxMetadataKeys},
		{"SendRequest.title maxLength", property(t, doc, "SendRequest", "title").MaxLength, maxTextBytes},
		{"SendRequest.body maxLength", property(t, doc, "SendRequest", "body").MaxLength, maxTextBytes},
		{"SendRequest.link maxLength", property(t, doc, "SendRequest", "link").MaxLength, maxTextBytes},
	}
	for _, l := range limits {
		if l.got == nil || *l.got != uint64(l.want) {
			t.Errorf("%s: %v in the document, %d in the code", l.where, l.got, l.want)
		}
	}
	if !strings.Contains(schema(t, doc, "SendRequest").Description, strconv.Itoa(MaxBodyBytes)) {
		t.Errorf("the SendRequest description does not state MaxBodyBytes (%d)", MaxBodyBytes)
	}
	inboxLimit := parameter(t, doc, "InboxLimit")
	if inboxLimit.Max == nil || *inboxLimit.Max != maxPage || fmt.Sprint(inboxLimit.Default) != strconv.Itoa(defaultPage) {
		t.Errorf("parameter InboxLimit: maximum %v default %v in the document, %d and %d in the code", inboxLimit.Max, inboxLimit.Default, maxPage, defaultPage)
	}
	if m := property(t, doc, "UnreadCount", "unread_count").Max; m == nil || *m != maxUnreadSeen {
		t.Errorf("UnreadCount.unread_count maximum: %v in the document, %d in the code", m, maxUnreadSeen)
	}
	if !strings.Contains(property(t, doc, "MarkedAllRead", "marked").Description, strconv.Itoa(maxReadAll)) {
		t.Errorf("the MarkedAllRead.marked description does not state maxReadAll (%d)", maxReadAll)
	}
	if !strings.Contains(property(t, doc, "Preferences", "categories").Description, categoryRE.String()) {
		t.Errorf("the Preferences.categories description does not state the category pattern %s", categoryRE)
	}
	for _, name := range []string{"UserRef", "Preferences"} {
		if !strings.Contains(schema(t, doc, name).Description, strconv.Itoa(smallBodyBytes)) {
			t.Errorf("the %s description does not state smallBodyBytes (%d)", name, smallBodyBytes)
		}
	}
}

// TestOpenAPISendRequestAgreesWithDecodeSend runs sample bodies through the SendRequest schema
// and DecodeSend: both must accept, or both refuse. (Some rules, such as "template_id or
// body", are stated in the schema's description only; samples here are ones the schema can
// judge.)
func TestOpenAPISendRequestAgreesWithDecodeSend(t *testing.T) {
	doc := loadOpenAPI(t)
	s := schema(t, doc, "SendRequest")
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	many := make([]string, MaxRecipients+1)
	for i := range many {
		many[i] = fmt.Sprintf("u%d", i)
	}
	manyJSON, _ := json.Marshal(many)
	meta := map[string]string{}
	for i := range maxMetadataKeys + 1 {
		meta[fmt.Sprintf("k%d", i)] = "v"
	}
	metaJSON, _ := json.Marshal(meta)
	tests := []struct {
		name, body string
		valid      bool
	}{
		{"template", `{"type":"transactional","template_id":"otp","data":{"code":"1"},"recipients":["u1","u1"]}`, true},
		{"inline topic", `{"type":"social","category":"comment","title":"t","body":"b","link":"myapp://posts/7","topic":"news","channels":["in_app","push"],"send_at":"2026-12-01T09:00:00+01:00","idempotency_key":"k-1","metadata":{"a":"b"}}`, true},
		{"empty strings mean absent", `{"type":"marketing","category":"","template_id":"promo","title":"","link":"","recipients":["u"],"idempotency_key":""}`, true},
		{"an empty topic is refused", `{"type":"transactional","category":"otp","body":"1","recipients":["u"],"topic":""}`, false},
		{"an empty topic alone is refused", `{"type":"transactional","category":"otp","body":"1","topic":""}`, false},
		{"null is refused", `{"type":"marketing","template_id":"promo","recipients":["u"],"metadata":null}`, false},
		{"empty channels are refused", `{"type":"marketing","template_id":"promo","recipients":["u"],"channels":[]}`, false},
		{"a link with a space", `{"type":"social","category":"c","body":"b","link":"myapp://a b","recipients":["u"]}`, false},
		{"exactly the maximum", `{"type":"social","category":"c","body":"` + strings.Repeat("x", maxTextBytes) + `","recipients":` + string(manyJSON[:strings.LastIndex(string(manyJSON), ",")]) + `]}`, true},
		{"unknown field", `{"type":"social","category":"c","body":"b","recipients":["u"],"priority":"high"}`, false},
		{"missing type", `{"category":"c","body":"b","recipients":["u"]}`, false},
		{"unknown type", `{"type":"urgent","category":"c","body":"b","recipients":["u"]}`, false},
		{"type of the wrong JSON type", `{"type":1,"category":"c","body":"b","recipients":["u"]}`, false},
		{"bad category", `{"type":"social","category":"Comment","body":"b","recipients":["u"]}`, false},
		{"bad template id", `{"type":"social","template_id":"a b","recipients":["u"]}`, false},
		{"body too long", `{"type":"social","category":"c","body":"` + strings.Repeat("x", maxTextBytes+1) + `","recipients":["u"]}`, false},
		{"link without scheme", `{"type":"social","category":"c","body":"b","link":"example.com","recipients":["u"]}`, false},
		{"bad recipient", `{"type":"social","category":"c","body":"b","recipients":["a b"]}`, false},
		{"too many recipients", `{"type":"social","category":"c","body":"b","recipients":` + string(manyJSON) + `}`, false},
		{"bad topic", `{"type":"social","category":"c","body":"b","topic":"a/b"}`, false},
		{"unknown channel", `{"type":"social","category":"c","body":"b","recipients":["u"],"channels":["fax"]}`, false},
		{"repeated channel", `{"type":"social","category":"c","body":"b","recipients":["u"],"channels":["sms","sms"]}`, false},
		{"bad send_at", `{"type":"social","category":"c","body":"b","recipients":["u"],"send_at":"tomorrow"}`, false},
		{"blank idempotency key", `{"type":"social","category":"c","body":"b","recipients":["u"],"idempotency_key":"   "}`, false},
		{"long idempotency key", `{"type":"social","category":"c","body":"b","recipients":["u"],"idempotency_key":"` + strings.Repeat("k", 256) + `"}`, false},
		{"metadata value not a string", `{"type":"social","category":"c","body":"b","recipients":["u"],"metadata":{"k":1}}`, false},
		{"metadata value too long", `{"type":"social","category":"c","body":"b","recipients":["u"],"metadata":{"k":"` + strings.Repeat("v", 1025) + `"}}`, false},
		{"too many metadata keys", `{"type":"social","category":"c","body":"b","recipients":["u"],"metadata":` + string(metaJSON) + `}`, false},
	}
	for _, tt := range tests {
		var v any
		if err := json.Unmarshal([]byte(tt.body), &v); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		schemaErr := s.VisitJSON(v, openapi3.VisitAsRequest(), openapi3.EnableFormatValidation(), openapi3.MultiErrors())
		_, decodeErr := DecodeSend(strings.NewReader(tt.body), at)
		if (schemaErr == nil) != tt.valid {
			t.Errorf("%s: the schema says %v, want valid=%v", tt.name, schemaErr, tt.valid)
		}
		if (decodeErr == nil) != tt.valid {
			t.Errorf("%s: DecodeSend says %+v, want valid=%v", tt.name, decodeErr, tt.valid)
		}
	}
}

// TestOpenAPIResponseSchemasMatchTheTypes marshals fully populated values of the types the
// handlers answer with, and checks each has exactly the properties of its schema and matches it.
func TestOpenAPIResponseSchemasMatchTheTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	id := "019ab3f0-6c1e-7d2a-9b4f-3e2d1c0b9a87"
	state := deliverylog.State{NotificationID: id, UserID: "u1", Channel: notify.Push, State: notify.StateSuppressed,
		Reason: notify.ReasonNoDevice, Detail: "d", UpdatedAt: at, Receipts: []deliverylog.Receipt{{Status: "undelivered", At: at, Code: "30005"}}}
	item := inbox.Item{AppID: "app1", UserID: "u1", NotificationID: id, CreatedAt: at, Tier: notify.Social, Category: "comment", Title: "t", Body: "b",
		Link: "myapp://posts/7", Metadata: map[string]string{"k": "v"}, ReadAt: &at, Topic: "news"}
	tests := []struct {
		schema string
		value  any
	}{
		{"Notification", deliverylog.Notification{ID: id, AppID: "app1", Tier: notify.Social, Category: "c", AcceptedAt: at, SendAt: &at,
			RecipientCount: 1, Topic: "news", Channels: []string{notify.Push}, FanoutPath: "list", FanoutDoneAt: &at,
			Workflow: &notify.WorkflowRef{ID: "digest", Version: 2, RunID: id, Step: "summary"}}},
		// As status() in server.go builds it.
		{"ChannelState", struct {
			deliverylog.State
			Attempts int `json:"attempts"`
		}{state, 1}},
		{"Receipt", deliverylog.Receipt{Status: "undelivered", At: at, Code: "30005"}},
		{"ReceiptOutcome", receipts.Outcome{Status: "delivered", Recorded: true, Final: "delivered"}},
		{"SendGridOutcome", receipts.BatchOutcome{Events: 3, Recorded: 1, Unchanged: 1, Skipped: 1}},
		{"Attempt", deliverylog.Attempt{NotificationID: id, At: at, UserID: "u1", Channel: notify.Push, Outcome: notify.StateFailed,
			Provider: "apns", ProviderStatus: "400", ProviderMessageID: "m1", Error: "BadDeviceToken"}},
		{"Template", templates.Template{ID: "otp", Type: notify.Transactional, Category: "security",
			Content: map[string]notify.Content{notify.SMS: {Text: "{{.code}}"}}, Locales: map[string]map[string]notify.Content{"de": {notify.SMS: {Text: "Code {{.code}}"}}},
			DefaultLocale: "en-GB", Version: 1, UpdatedAt: at}},
		{"Contact", users.Contact{UserID: "u1", Email: "ada@example.com", Phone: "+4915112345678", Locale: "de-DE", UpdatedAt: at}},
		{"Device", notify.Device{DeviceID: "d1", Platform: "ios", Token: strings.Repeat("ab", 32)}},
		{"InboxItem", item},
		{"Preferences", prefs.Preferences{Channels: map[string]bool{notify.SMS: false}, Categories: map[string]map[string]bool{"marketing.news": {notify.Email: false}},
			QuietHours: &prefs.QuietHours{Start: "22:00", End: "07:00"}, Timezone: "Europe/Paris", ChannelOrder: []string{notify.Push, notify.Email}, HardStop: true}},
		// As listInbox, unreadCount, markRead and readAll in inbox.go build them.
		{"InboxPage", gin.H{"items": []inbox.Item{item}, "next_cursor": inbox.Cursor{At: at, ID: id}.Encode()}},
		{"InboxPage", gin.H{"items": []inbox.Item{}, "next_cursor": nil}},
		{"UnreadCount", gin.H{"user_id": "u1", "unread_count": maxUnreadSeen, "more": true}},
		{"MarkedRead", gin.H{"notification_id": id, "user_id": "u1", "read": true}},
		{"MarkedAllRead", gin.H{"user_id": "u1", "marked": maxReadAll}},
		// As the webhook handlers answer (webhooks.go): with a previous secret valid, and without.
		{"WebhookEndpoint", webhooks.Endpoint{ID: "ep_1", Jurisdiction: "EU", URL: "https://example.com/h", Description: "d", EventTypes: []string{"notification.read"},
			CreatedAt: at, UpdatedAt: at, PreviousSecretValid: true, PreviousSecretExpiresAt: &at}},
		{"WebhookEndpointWithSecret", withSecret{webhooks.Endpoint{ID: "ep_1", Jurisdiction: "EU", URL: "https://example.com/h", EventTypes: []string{},
			CreatedAt: at, UpdatedAt: at, PreviousSecretValid: true, PreviousSecretExpiresAt: &at}, "whsec_bmV3"}},
	}
	for _, tt := range tests {
		raw, err := json.Marshal(tt.value)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		s := schema(t, doc, tt.schema)
		got, want := slices.Sorted(maps.Keys(v)), slices.Sorted(maps.Keys(s.Properties))
		if !slices.Equal(got, want) {
			t.Errorf("%s: the type marshals %v, the schema has %v", tt.schema, got, want)
		}
		if err := s.VisitJSON(any(v), openapi3.VisitAsResponse(), openapi3.EnableFormatValidation()); err != nil {
			t.Errorf("%s: %s does not match the schema: %v", tt.schema, raw, err)
		}
	}
	// Without a valid previous secret the endpoint says so, and has no expiry.
	raw, _ := json.Marshal(webhooks.Endpoint{ID: "ep_1", Jurisdiction: "EU", URL: "https://example.com/h", EventTypes: []string{}, CreatedAt: at, UpdatedAt: at})
	var v map[string]any
	_ = json.Unmarshal(raw, &v)
	if _, ok := v["previous_secret_expires_at"]; ok || v["previous_secret_valid"] != false {
		t.Errorf("an endpoint without a previous secret marshals %s", raw)
	}
	if err := schema(t, doc, "WebhookEndpoint").VisitJSON(any(v), openapi3.VisitAsResponse(), openapi3.EnableFormatValidation()); err != nil {
		t.Errorf("WebhookEndpoint: %s does not match the schema: %v", raw, err)
	}
}

// TestOpenAPIRequestSchemasAgreeWithHandlers sends sample bodies to the handlers (through the
// engine, with no dependencies, so only bodies refused before any store is touched are sent)
// and checks the schema judges each alike, and that each answer is documented.
func TestOpenAPIRequestSchemasAgreeWithHandlers(t *testing.T) {
	doc := loadOpenAPI(t)
	const prefsRoute = "/v1/users/:user_id/preferences"
	const rotateRoute = "/v1/webhooks/endpoints/:endpoint_id/rotate-secret"
	engine := testEngine(&Server{})
	apnsToken := strings.Repeat("ab", 32)
	fcmToken := "dQw4w9WgXcQ:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
	tests := []struct {
		method, path, schema, body string // path is the gin route
		code                       string // the handler's error code; "" for a body the server takes
	}{
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"transactional","category":"security","content":{"sms":{"text":"{{.code}}"},"email":{"subject":"s","html":"<b>{{.code}}</b>"}}}`, ""},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"transactional","category":"security","content":{"sms":{"text":"x","title":"t"}}}`, CodeInvalidTemplate},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"transactional","category":"security","content":{"fax":{"text":"x"}}}`, CodeInvalidChannel},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"transactional","category":"security","content":{}}`, CodeInvalidTemplate},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"transactional","category":"security","content":{"sms":{"text":"x","colour":"red"}}}`, CodeUnknownField},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"category":"security","content":{"sms":{"text":"x"}}}`, CodeInvalidType},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"social","content":{"sms":{"text":"x"}}}`, CodeInvalidField},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"social","category":"c","content":{"sms":{"text":"{{.n}}"}},"locales":{"de":{"sms":{"text":"{{number .n}}"}},"de-AT":{"sms":{"text":"x"}}}}`, ""},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"social","category":"c","content":{"sms":{"text":"x"}},"locales":{"de":{"fax":{"text":"x"}}}}`, CodeInvalidChannel},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"social","category":"c","content":{"sms":{"text":"x"}},"locales":{"de":{"sms":{"text":"x","colour":"red"}}}}`, CodeUnknownField},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"social","category":"c","content":{"sms":{"text":"x"}},"locales":{"de":"x"}}`, CodeInvalidField},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"social","category":"c","content":{"sms":{"text":"x"}},"default_locale":"de"}`, ""},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"social","category":"c","content":{"sms":{"text":"x"}},"default_locale":1}`, CodeInvalidField},
		{"PUT", "/v1/templates/:id", "TemplateRequest", `{"type":"social","category":"c","content":{"sms":{"text":"x"}},"default_locale":"` + strings.Repeat("a", 36) + `"}`, CodeInvalidField},
		{"PUT", "/v1/users/:user_id", "UserRequest", `{"jurisdiction":"EU","email":"ada@example.com","phone":"+4915112345678","locale":"de-DE"}`, ""},
		{"PUT", "/v1/users/:user_id", "UserRequest", `{"jurisdiction":"EU"}`, ""},
		{"PUT", "/v1/users/:user_id", "UserRequest", `{"jurisdiction":"EU","country":"DE","email":""}`, ""},
		{"PUT", "/v1/users/:user_id", "UserRequest", `{}`, CodeMissingField},
		{"PUT", "/v1/users/:user_id", "UserRequest", `{"jurisdiction":"eu"}`, CodeInvalidField},
		{"PUT", "/v1/users/:user_id", "UserRequest", `{"jurisdiction":"EU","phone":"015112345678"}`, CodeInvalidField},
		{"PUT", "/v1/users/:user_id", "UserRequest", `{"jurisdiction":"EU","locale":"` + strings.Repeat("x", 36) + `"}`, CodeInvalidField},
		{"PUT", "/v1/users/:user_id", "UserRequest", `{"jurisdiction":"EU","email":"ada@example.com","name":"Ada"}`, CodeUnknownField},
		{"PUT", "/v1/users/:user_id", "UserRequest", `{"jurisdiction":"EU","email":null}`, CodeInvalidField},
		{"POST", "/v1/users/:user_id/devices", "DeviceRequest", `{"platform":"ios","token":"` + apnsToken + `","device_id":"d1"}`, ""},
		{"POST", "/v1/users/:user_id/devices", "DeviceRequest", `{"platform":"web","token":"` + fcmToken + `","device_id":"d1"}`, ""},
		{"POST", "/v1/users/:user_id/devices", "DeviceRequest", `{"platform":"android","token":"` + apnsToken + `","device_id":"d1"}`, ""},
		{"POST", "/v1/users/:user_id/devices", "DeviceRequest", `{"platform":"ios","token":"` + fcmToken + `","device_id":"d1"}`, CodeInvalidField},
		{"POST", "/v1/users/:user_id/devices", "DeviceRequest", `{"platform":"android","token":"short","device_id":"d1"}`, CodeInvalidField},
		{"POST", "/v1/users/:user_id/devices", "DeviceRequest", `{"platform":"blackberry","token":"` + fcmToken + `","device_id":"d1"}`, CodeInvalidField},
		{"POST", "/v1/users/:user_id/devices", "DeviceRequest", `{"platform":"ios","token":"` + apnsToken + `"}`, CodeInvalidField},
		{"POST", "/v1/users/:user_id/devices", "DeviceRequest", `{"platform":"ios","token":"` + apnsToken + `","device_id":"d1","model":"x"}`, CodeUnknownField},
		{"PUT", prefsRoute, "Preferences", `{"channels":{"sms":false,"push":true},"categories":{"marketing.news":{"email":false},"comment":{}},"quiet_hours":{"start":"22:00","end":"07:00"},"timezone":"Europe/Paris","channel_order":["push","email"],"hard_stop":true}`, ""},
		{"PUT", prefsRoute, "Preferences", `{}`, ""},
		{"PUT", prefsRoute, "Preferences", `{"channels":null,"categories":null,"quiet_hours":null,"timezone":null,"channel_order":null,"hard_stop":null}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"timezone":"","channel_order":[],"quiet_hours":{"start":"00:00","end":"23:59"}}`, ""},
		{"PUT", prefsRoute, "Preferences", `{"channels":{"fax":true}}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"channels":{"push":"off"}}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"categories":{"comment":{"fax":false}}}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"categories":{"comment":true}}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"quiet_hours":{"start":"24:00","end":"07:00"}}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"quiet_hours":{"start":"22:00","end":"7:00"}}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"quiet_hours":{"start":"22:00","end":"07:60"}}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"quiet_hours":{"start":"22:00"}}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"quiet_hours":{"start":"22:00","end":"07:00","days":[1]}}`, CodeUnknownField},
		{"PUT", prefsRoute, "Preferences", `{"channel_order":["push","fax"]}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"channel_order":["push","push"]}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"hard_stop":"yes"}`, CodeInvalidField},
		{"PUT", prefsRoute, "Preferences", `{"language":"de"}`, CodeUnknownField},
		{"PATCH", "/v1/notifications/:id/read", "UserRef", `{"user_id":"u1"}`, ""},
		{"PATCH", "/v1/notifications/:id/read", "UserRef", `{}`, CodeMissingField},
		{"PATCH", "/v1/notifications/:id/read", "UserRef", `{"user_id":"a b"}`, CodeInvalidField},
		{"PATCH", "/v1/notifications/:id/read", "UserRef", `{"user_id":1}`, CodeInvalidField},
		{"PATCH", "/v1/notifications/:id/read", "UserRef", `{"user_id":"u1","read":true}`, CodeUnknownField},
		{"POST", "/v1/notifications/read-all", "UserRef", `{"user_id":"u1"}`, ""},
		{"POST", "/v1/notifications/read-all", "UserRef", `{"user_id":""}`, CodeMissingField},
		{"POST", "/v1/notifications/read-all", "UserRef", `{"user_id":"u1","before":"2026-11-25T12:00:00Z"}`, CodeUnknownField},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[{"id":"a","type":"email","template_id":"t"}]}`, ""},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[{"id":"a","type":"email","template_id":"t","if":[{"payload":"x.y","op":"in","value":[1,"a",true]}]},{"id":"w","type":"delay","until":"09:00"},{"id":"d","type":"digest","duration":"10m","key":"post.id","items":5},{"id":"c","type":"throttle","limit":3,"duration":"1w"}]}`, ""},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"category":"c","steps":[{"id":"a","type":"email","template_id":"t"}]}`, CodeMissingField},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"C","steps":[{"id":"a","type":"email","template_id":"t"}]}`, CodeInvalidField},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[]}`, CodeMissingField},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[{"id":"a","type":"fax","template_id":"t"}]}`, CodeInvalidField},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[{"id":"A","type":"email","template_id":"t"}]}`, CodeInvalidField},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[{"id":"a","type":"email","template_id":"t","retries":1}]}`, CodeUnknownField},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[{"id":"a","type":"email","template_id":"t"},{"id":"w","type":"delay","until":"24:00"}]}`, CodeInvalidField},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[{"id":"a","type":"email","template_id":"t"},{"id":"d","type":"digest","duration":"1h","items":101}]}`, CodeInvalidField},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[{"id":"a","type":"email","template_id":"t"},{"id":"c","type":"throttle","limit":0,"duration":"1d"}]}`, CodeInvalidField},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[{"id":"a","type":"email","template_id":"t","if":[{"step":"a","is":"opened"}]}]}`, CodeInvalidField},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[{"id":"a","type":"email","template_id":"t","if":[{"preference":"fax","is":"enabled"}]}]}`, CodeInvalidChannel},
		{"PUT", "/v1/workflows/:id", "WorkflowRequest", `{"type":"social","category":"c","steps":[{"id":"a","type":"email","template_id":"t","if":[{"payload":"x","op":"like","value":1}]}]}`, CodeInvalidField},
		{"POST", rotateRoute, "WebhookRotate", `{}`, ""},
		{"POST", rotateRoute, "WebhookRotate", `{"expire_previous_in_seconds":0}`, ""},
		{"POST", rotateRoute, "WebhookRotate", `{"expire_previous_in_seconds":604800}`, ""},
		{"POST", rotateRoute, "WebhookRotate", `{"expire_previous_in_seconds":604801}`, CodeInvalidField},
		{"POST", rotateRoute, "WebhookRotate", `{"expire_previous_in_seconds":-1}`, CodeInvalidField},
		{"POST", rotateRoute, "WebhookRotate", `{"expire_previous_in_seconds":1.5}`, CodeInvalidField},
		{"POST", rotateRoute, "WebhookRotate", `{"expire_previous_in_seconds":null}`, CodeInvalidField},
		{"POST", rotateRoute, "WebhookRotate", `{"expire_previous_in_seconds":"60"}`, CodeInvalidField},
		{"POST", rotateRoute, "WebhookRotate", `{"secret":"whsec_bWluZQ=="}`, CodeUnknownField},
	}
	for _, tt := range tests {
		name := tt.method + " " + tt.path + " " + tt.body
		var v any
		if err := json.Unmarshal([]byte(tt.body), &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		schemaErr := schema(t, doc, tt.schema).VisitJSON(v, openapi3.VisitAsRequest(), openapi3.MultiErrors())
		if (schemaErr == nil) != (tt.code == "") {
			t.Errorf("%s: the schema says %v, the handler %q", name, schemaErr, tt.code)
		}
		if tt.code == "" {
			continue // the handler would go on to the store
		}
		rec := serve(engine, tt.method, concrete(tt.path), tt.body, map[string]string{AppHeader: "app1"})
		checkDocumentedError(t, doc, name, tt.method, tt.path, rec, http.StatusBadRequest, tt.code)
	}
}

// TestOpenAPIPreferencesErrorsNameDocumentedFields checks the field each refused preferences
// document is named by, including rules the schema can only state in its description, against
// the forms the PUT operation's 400 description lists.
func TestOpenAPIPreferencesErrorsNameDocumentedFields(t *testing.T) {
	doc := loadOpenAPI(t)
	engine := testEngine(&Server{})
	const route = "/v1/users/:user_id/preferences"
	desc := *doc.Paths.Find(openAPIPath(route)).Put.Responses.Status(400).Value.Description
	tests := []struct{ body, field, documented string }{
		{`{"channels":{"fax":true}}`, "channels.fax", "channels.<channel>"},
		{`{"categories":{"Comment":{"push":false}}}`, "categories.Comment", "categories.<category>"},
		{`{"categories":{"comment":{"fax":false}}}`, "categories.comment.fax", "categories.<category>.<channel>"},
		{`{"quiet_hours":{"start":"7:00","end":"08:00"}}`, "quiet_hours.start", "quiet_hours.start"},
		{`{"quiet_hours":{"start":"07:00","end":"24:00"}}`, "quiet_hours.end", "quiet_hours.end"},
		{`{"timezone":"Mars/Olympus_Mons"}`, "timezone", "timezone"},
		{`{"timezone":"Local"}`, "timezone", "timezone"},
		{`{"channel_order":["push","push"]}`, "channel_order[1]", "channel_order[i]"},
		{`{"channel_order":["fax"]}`, "channel_order[0]", "channel_order[i]"},
		// The documented order: channels, categories, quiet_hours, timezone, channel_order.
		{`{"channel_order":["fax"],"timezone":"x","quiet_hours":{"start":"","end":""},"categories":{"c":{"fax":true}},"channels":{"fax":true}}`, "channels.fax", "channels.<channel>"},
		{`{"channel_order":["fax"],"timezone":"x","quiet_hours":{"start":"","end":""}}`, "quiet_hours.start", "quiet_hours.start"},
	}
	for _, tt := range tests {
		if !strings.Contains(desc, "`"+tt.documented+"`") {
			t.Errorf("the 400 description of PUT %s does not list %s", route, tt.documented)
		}
		rec := serve(engine, "PUT", concrete(route), tt.body, map[string]string{AppHeader: "app1"})
		var body struct {
			Error struct{ Code, Field string } `json:"error"`
		}
		if rec.Code != http.StatusBadRequest || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error.Code != CodeInvalidField || body.Error.Field != tt.field {
			t.Errorf("%s: got %d %s, want 400 invalid_field naming %s", tt.body, rec.Code, rec.Body.String(), tt.field)
		}
	}
}

// TestOpenAPIInboxQueryErrorsAreDocumented sends query parameters the inbox listing refuses
// before touching a store, and checks that the parameter's schema refuses them too where it can.
func TestOpenAPIInboxQueryErrorsAreDocumented(t *testing.T) {
	doc := loadOpenAPI(t)
	engine := testEngine(&Server{})
	const route = "/v1/users/:user_id/notifications"
	limit := parameter(t, doc, "InboxLimit")
	for _, n := range []int{1, maxPage} {
		if err := limit.VisitJSON(float64(n)); err != nil {
			t.Errorf("limit=%d: the handler takes it, the schema says %v", n, err)
		}
	}
	tests := []struct {
		query, field string
		schemaValue  any // what the parameter's schema must refuse too; nil when it cannot judge
	}{
		{"limit=0", "limit", float64(0)},
		{"limit=101", "limit", float64(maxPage + 1)},
		{"limit=ten", "limit", "ten"},
		{"unread_only=maybe", "unread_only", nil},
		{"cursor=not-a-cursor", "cursor", nil},
		{"limit=101&unread_only=maybe&cursor=x", "limit", nil},
	}
	for _, tt := range tests {
		if tt.schemaValue != nil && limit.VisitJSON(tt.schemaValue) == nil {
			t.Errorf("%s: the handler refuses it, the InboxLimit schema takes it", tt.query)
		}
		rec := serve(engine, "GET", concrete(route)+"?"+tt.query, "", map[string]string{AppHeader: "app1"})
		checkDocumentedError(t, doc, tt.query, "GET", route, rec, http.StatusBadRequest, CodeInvalidField)
		var body struct {
			Error struct{ Field string } `json:"error"`
		}
		if json.Unmarshal(rec.Body.Bytes(), &body) == nil && body.Error.Field != tt.field {
			t.Errorf("%s: the error names %q, want %q", tt.query, body.Error.Field, tt.field)
		}
	}
}

// TestOpenAPIAuthenticationAnswersAreDocumented calls every route without the app header, and
// without the internal token, and checks the answers against the document.
func TestOpenAPIAuthenticationAnswersAreDocumented(t *testing.T) {
	doc := loadOpenAPI(t)
	open := testEngine(&Server{})
	guarded := testEngine(&Server{InternalToken: "s3cret"})
	for _, r := range open.Routes() {
		path := concrete(r.Path)
		rec := serve(open, r.Method, path, `{}`, nil)
		if strings.HasPrefix(r.Path, "/internal/") {
			// Not app-scoped: without the header the body's own checks answer.
			checkDocumentedError(t, doc, "without "+AppHeader, r.Method, r.Path, rec, http.StatusBadRequest, CodeMissingField)
		} else if strings.HasPrefix(r.Path, "/v1/unsubscribe/") || strings.HasPrefix(r.Path, "/v1/receipts/") {
			// The app is in the token: without a token this region minted, the link is not one.
			checkDocumentedError(t, doc, "without "+AppHeader, r.Method, r.Path, rec, http.StatusNotFound, CodeNotFound)
		} else {
			checkDocumentedError(t, doc, "without "+AppHeader, r.Method, r.Path, rec, http.StatusBadRequest, CodeMissingApp)
		}
		rec = serve(guarded, r.Method, path, `{}`, map[string]string{AppHeader: "app1", "Authorization": "Bearer wrong"})
		checkDocumentedError(t, doc, "with a wrong token", r.Method, r.Path, rec, http.StatusUnauthorized, CodeUnauthenticated)
	}
}

// concrete fills a gin route's parameters with valid values.
func concrete(route string) string {
	return strings.NewReplacer(":id", "019ab3f0-6c1e-7d2a-9b4f-3e2d1c0b9a87", ":topic", "news", ":user_id", "u1", ":device_id", "d1", ":endpoint_id", "ep_1").Replace(route)
}

func serve(engine *gin.Engine, method, path, body string, headers map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	engine.ServeHTTP(rec, req)
	return rec
}

// checkDocumentedError checks that rec is the wanted error, that the operation documents its
// status, and that the body matches the documented schema.
func checkDocumentedError(t *testing.T, doc *openapi3.T, name, method, ginPath string, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	label := fmt.Sprintf("%s %s (%s)", method, ginPath, name)
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	if rec.Code != status || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error.Code != code {
		t.Errorf("%s: got %d %s, want %d %s", label, rec.Code, rec.Body.String(), status, code)
		return
	}
	item := doc.Paths.Find(openAPIPath(ginPath))
	if item == nil || item.GetOperation(method) == nil {
		t.Errorf("%s: not documented", label)
		return
	}
	resp := item.GetOperation(method).Responses.Status(status)
	if resp == nil {
		t.Errorf("%s: status %d not documented", label, status)
		return
	}
	mt := resp.Value.Content.Get("application/json")
	if mt == nil || mt.Schema == nil {
		t.Errorf("%s: status %d has no JSON schema", label, status)
		return
	}
	var v any
	_ = json.Unmarshal(rec.Body.Bytes(), &v)
	if err := mt.Schema.Value.VisitJSON(v, openapi3.VisitAsResponse()); err != nil {
		t.Errorf("%s: the body %s does not match the documented schema: %v", label, rec.Body.String(), err)
	}
}

// TestOpenAPITemplateLocaleRefusalsAreDocumented sends template bodies whose locales the schema
// cannot judge (canonical form, the default's fields and variables, plural forms) and checks
// each is refused before the store, with a documented code and the field named.
func TestOpenAPITemplateLocaleRefusalsAreDocumented(t *testing.T) {
	doc := loadOpenAPI(t)
	engine := testEngine(&Server{})
	const route = "/v1/templates/:id"
	for _, tt := range []struct{ locales, code, field string }{
		{`{"de_AT":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales.de_AT"},
		{`{"iw":{"push":{"title":"t","body":"b"}}}`, CodeInvalidField, "locales.iw"},
		{`{"de":{"push":{"title":"t"}}}`, CodeMissingField, "locales.de.push.body"},
		{`{"de":{"sms":{"text":"t"}}}`, CodeInvalidChannel, "locales.de.sms"},
		{`{"de":{"push":{"title":"t","body":"{{.vorname}}"}}}`, CodeInvalidTemplate, "locales.de.push.body"},
		{`{"de":{"push":{"title":"t","body":"{{plural .n \"one\" \"x\" \"few\" \"y\" \"other\" \"z\"}}"}}}`, CodeInvalidTemplate, "locales.de.push.body"},
		{`{"pl":{"push":{"title":"t","body":"{{plural .n \"one\" \"x\" \"other\" \"z\"}}"}}}`, CodeInvalidTemplate, "locales.pl.push.body"},
		{`{"de":{"push":{"title":"{{.who","body":"b"}}}`, CodeInvalidTemplate, "locales.de.push.title"},
		{`{},"default_locale":"de_DE"`, CodeInvalidField, "default_locale"},
		{`{},"default_locale":"pl"`, CodeInvalidTemplate, "content.push.body"}, // Polish needs few and many
	} {
		body := `{"type":"social","category":"c","content":{"push":{"title":"{{.who}}","body":"{{plural .n \"one\" \"# x\" \"other\" \"# xs\"}}"}},"locales":` + tt.locales + `}`
		rec := serve(engine, "PUT", "/v1/templates/t1", body, map[string]string{AppHeader: "app1"})
		checkDocumentedError(t, doc, tt.locales, "PUT", route, rec, http.StatusBadRequest, tt.code)
		var got struct {
			Error struct{ Field string } `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Error.Field != tt.field {
			t.Errorf("%s: field %q, want %q", tt.locales, got.Error.Field, tt.field)
		}
	}
}
