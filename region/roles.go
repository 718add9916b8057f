package region

// Role names. A region process runs any subset, so each stage scales on its own in production;
// locally one process per region runs them all. Roles are listed here as their stages land.
const (
	RoleAPI       = "api"
	RoleFanout    = "fanout"
	RoleScheduler = "scheduler"
	RoleDispatch  = "dispatch"
	// RoleExporter ships k-anonymous counts of the delivery events to central analytics. It is
	// opt-in: it needs central's address and the region's token (the export block).
	RoleExporter = "exporter"
	// RoleWebhooks tells apps what happened to their notifications: it consumes the region's
	// delivery events and delivers them, signed, to the apps' webhook endpoints.
	RoleWebhooks = "webhooks"
)

// AllRoles lists the pipeline roles, which a region runs when its config names none.
func AllRoles() []string {
	return []string{RoleAPI, RoleFanout, RoleScheduler, RoleDispatch, RoleWebhooks}
}

// KnownRoles lists every role a region process can run: the pipeline's and the opt-in exporter.
func KnownRoles() []string { return append(AllRoles(), RoleExporter) }
