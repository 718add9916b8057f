# Residency guards live here as validations, so a plan for a misdeclared region fails before
# anything is created. They compare against the residency module's maps, which the Go tests in
# terraform/ keep equal to the residency policy.

variable "herald_region" {
  description = "The Herald region this deployment is, e.g. eu-west-1 (a region of the residency policy)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}-[a-z]+-[0-9]$", var.herald_region))
    error_message = "herald_region must look like eu-west-1 (^[a-z]{2}-[a-z]+-[0-9]$), as the residency policy requires."
  }
}

variable "jurisdiction" {
  description = "The jurisdiction the region belongs to (EU, US, IN): its users' personal data stays in it."
  type        = string

  validation {
    condition     = contains(lookup(var.policy_regions, var.jurisdiction, []), var.herald_region)
    error_message = "herald_region is not a region of this jurisdiction in the residency policy: a region belongs to exactly one jurisdiction."
  }
}

variable "aws_region" {
  description = "The AWS region hosting this Herald region; the root's aws provider must be configured for it."
  type        = string

  validation {
    condition     = contains(lookup(var.jurisdiction_cloud_regions, var.jurisdiction, []), var.aws_region)
    error_message = "aws_region lies outside the jurisdiction: personal data must be stored inside it."
  }
}

variable "policy_regions" {
  description = "Jurisdiction -> Herald regions in failover order (module.residency.herald_regions)."
  type        = map(list(string))
}

variable "jurisdiction_cloud_regions" {
  description = "Jurisdiction -> the AWS regions allowed to hold its personal data (module.residency.cloud_regions)."
  type        = map(list(string))
}

variable "postgres_primary_region" {
  description = "The region of the jurisdiction holding its Postgres primary (module.residency.postgres_primary[jurisdiction]); every other region of it holds a read replica."
  type        = string

  validation {
    condition     = contains(lookup(var.policy_regions, var.jurisdiction, []), var.postgres_primary_region)
    error_message = "postgres_primary_region must be a region of the jurisdiction: its database is replicated only inside it."
  }
}

variable "region_vpc_cidrs" {
  description = "Herald region -> its VPC CIDR (module.residency.vpc_cidrs): the networks of the jurisdiction's other regions, which this region peers with."
  type        = map(string)

  validation {
    condition = alltrue([
      for r in lookup(var.policy_regions, var.jurisdiction, []) : can(cidrnetmask(lookup(var.region_vpc_cidrs, r, "")))
    ])
    error_message = "region_vpc_cidrs must give the VPC CIDR of every region of the jurisdiction."
  }
}

variable "region_aws_regions" {
  description = "Herald region -> the AWS region hosting it (module.residency.aws_regions): where the jurisdiction's other regions, which hold replicas of this region's stores, are."
  type        = map(string)

  validation {
    condition = alltrue([
      for r in lookup(var.policy_regions, var.jurisdiction, []) : contains(lookup(var.jurisdiction_cloud_regions, var.jurisdiction, []), lookup(var.region_aws_regions, r, ""))
    ])
    error_message = "Every region of the jurisdiction holds a replica of its Cassandra keyspace and Postgres database, so each must be hosted in an AWS region inside the jurisdiction."
  }
}

variable "backup_copy_vault_arns" {
  description = "AWS Backup vaults that receive a copy of every backup of the personal-data stores. Empty: backups stay in this region."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for arn in var.backup_copy_vault_arns :
      can(regex("^arn:aws:backup:[a-z0-9-]+:[0-9]{12}:backup-vault:.+$", arn)) && contains(lookup(var.jurisdiction_cloud_regions, var.jurisdiction, []), split(":", arn)[3])
    ])
    error_message = "Every backup copy vault must be an AWS Backup vault ARN in an AWS region of the same jurisdiction: no backup copy of personal data may leave it."
  }
}

variable "availability_zones" {
  description = "Three zones of aws_region."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) == 3 && alltrue([for z in var.availability_zones : startswith(z, var.aws_region)])
    error_message = "availability_zones must be three zones of aws_region."
  }
}

variable "vpc_cidr" {
  description = "The region's VPC range, a /16 that does not overlap other regions' (they never peer, but operators' VPNs may reach several)."
  type        = string
}

variable "herald_image" {
  description = "The herald container image, pinned by digest (repo@sha256:...) so every role runs the same build (modules/service refuses a tag)."
  type        = string
}

variable "roles" {
  description = "The region's roles, each its own ECS service so each stage scales on its own: api, fanout, scheduler, dispatch, webhooks (delivers the apps' signed webhooks: its tasks reach the apps' endpoints over HTTPS through the NAT gateways, as dispatch reaches the providers), and the opt-in exporter (k-anonymous counts to central analytics; needs the region config's export block)."
  type = map(object({
    cpu           = number
    memory        = number
    desired_count = number
  }))
  default = {
    api       = { cpu = 1024, memory = 2048, desired_count = 3 }
    fanout    = { cpu = 2048, memory = 4096, desired_count = 3 }
    scheduler = { cpu = 512, memory = 1024, desired_count = 2 }
    dispatch  = { cpu = 1024, memory = 2048, desired_count = 3 }
    webhooks  = { cpu = 512, memory = 1024, desired_count = 2 }
  }

  validation {
    condition     = length(setsubtract(keys(var.roles), ["api", "fanout", "scheduler", "dispatch", "webhooks", "exporter"])) == 0 && contains(keys(var.roles), "api")
    error_message = "roles may only be api, fanout, scheduler, dispatch, webhooks and exporter, and must include api (the gateway calls it)."
  }
}

variable "api_certificate_arn" {
  description = "ACM certificate for the regional API's HTTPS listener."
  type        = string
}

variable "api_allowed_cidrs" {
  description = "Who may call the regional API: the gateways' egress addresses."
  type        = list(string)

  validation {
    condition     = length(var.api_allowed_cidrs) > 0 && !contains(var.api_allowed_cidrs, "0.0.0.0/0")
    error_message = "api_allowed_cidrs must list the gateways' egress ranges; the regional API is not public."
  }
}

variable "consul_http_addr" {
  description = "Consul agent address the Herald processes register with and read live config from (CONSUL_HTTP_ADDR)."
  type        = string
}

variable "kafka" {
  description = "Amazon MSK cluster: one broker per zone times broker_multiplier."
  type = object({
    version           = string
    instance_type     = string
    broker_multiplier = number
    volume_size_gb    = number
  })
  default = {
    version           = "3.9.x"
    instance_type     = "kafka.m7g.large"
    broker_multiplier = 1
    volume_size_gb    = 500
  }
}

variable "cassandra" {
  description = "Self-managed Apache Cassandra 5.0 on EC2 (Amazon Keyspaces has no SAI indexes, which erasure needs)."
  type = object({
    ami_id         = string
    instance_type  = string
    nodes          = number
    volume_size_gb = number
  })

  validation {
    condition     = var.cassandra.nodes >= 3 && var.cassandra.nodes % 3 == 0
    error_message = "cassandra.nodes must be a multiple of 3 (one rack per zone, replication factor 3)."
  }
}

variable "postgres" {
  description = "Amazon RDS for PostgreSQL, Multi-AZ."
  type = object({
    engine_version     = string
    instance_class     = string
    allocated_storage  = number
    backup_retention_d = number
  })
  default = {
    engine_version     = "17"
    instance_class     = "db.r7g.large"
    allocated_storage  = 200
    backup_retention_d = 14
  }
}

variable "redis" {
  description = "Amazon ElastiCache for Redis OSS: a primary and replicas across zones."
  type = object({
    engine_version = string
    node_type      = string
    nodes          = number
  })
  default = {
    engine_version = "7.1"
    node_type      = "cache.r7g.large"
    nodes          = 2
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "dispatch_environment" {
  description = "Non-secret provider settings as HERALD_DISPATCH_* variables (endpoints, APNs team and key id, sender addresses); secrets come from Secrets Manager."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.dispatch_environment) : startswith(k, "HERALD_DISPATCH_")])
    error_message = "dispatch_environment may only set HERALD_DISPATCH_* variables."
  }
}

variable "user_keys_master_keys" {
  description = "Ids of the master keys that wrap the users' data keys in Postgres (Herald's user_keys.master_keys; docs/residency.md, \"Master keys\"). Each id gets a Secrets Manager secret, herald-<region>/user-keys-master-<id>, created empty: put the base64 of 32 random bytes in it (docs/runbook.md), the same value in every region of the jurisdiction, since they share the database. Keep an old id while herald_user_keys_rows shows rows under it."
  type        = list(string)
  default     = ["1"]

  validation {
    condition     = length(var.user_keys_master_keys) > 0 && alltrue([for id in var.user_keys_master_keys : can(regex("^[a-z0-9]{1,32}$", id))])
    error_message = "user_keys_master_keys: at least one id, each 1-32 lower-case letters or digits (it names a secret and an environment variable)."
  }
}

variable "user_keys_current_master_key" {
  description = "The id, one of user_keys_master_keys, of the master key new data keys are wrapped under and older ones rewrapped under (Herald's user_keys.current)."
  type        = string
  default     = "1"

  validation {
    condition     = contains(var.user_keys_master_keys, var.user_keys_current_master_key)
    error_message = "user_keys_current_master_key must be one of user_keys_master_keys."
  }
}
