package region

// Role names. A region process runs any subset, so each stage scales on its own in production;
// locally one process per region runs them all. Roles are listed here as their stages land.
const (
	RoleAPI       = "api"
	RoleFanout    = "fanout"
	RoleScheduler = "scheduler"
	RoleDispatch  = "dispatch"
)

// AllRoles lists every role a region process can run.
func AllRoles() []string { return []string{RoleAPI, RoleFanout, RoleScheduler, RoleDispatch} }
