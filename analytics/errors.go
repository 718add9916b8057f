package analytics

// errorCodes is the catalogue of the error codes analytics answers, with their HTTP status.
// docs/openapi-analytics.yaml lists the same (TestOpenAPIListsExactlyTheErrorCatalogue).
var errorCodes = map[string]int{
	"unauthenticated":     401, // an ingest route without a region's client certificate (or on the operators' listener)
	"unauthorized":        401, // no token, or not the right one: the certificate's region's (ingest), the operator's (queries, dashboard)
	"unknown_client":      403, // a client certificate of the internal CA that names no region
	"region_mismatch":     403, // a region's certificate posting another region's batch
	"body_too_large":      413,
	"invalid_json":        400,
	"unknown_field":       400, // a field the wire format does not define (a user_id, say)
	"missing_field":       400,
	"duplicate_field":     400,
	"invalid_field":       400, // a wrong type, or a value outside the closed vocabularies
	"unsupported_version": 400,
	"unknown_category":    400, // not registered for the app in config
	"unknown_app":         400, // not listed, when categories.listed_apps_only is set
	"below_k":             400, // a cell or histogram with fewer than k distinct recipients
	"duplicate_cell":      400,
	"window_too_old":      400, // older than minute_retention allows
	"unknown_parameter":   400,
	"invalid_parameter":   400,
	"not_found":           404, // no such endpoint
	"store_unavailable":   503,
}
