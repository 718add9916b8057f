variable "jurisdiction" {
  description = "The jurisdiction this gateway serves (EU, US, IN): one gateway per jurisdiction."
  type        = string

  validation {
    condition     = contains(keys(var.policy_regions), var.jurisdiction)
    error_message = "jurisdiction is not a jurisdiction of the residency policy."
  }
}

variable "aws_region" {
  description = "The AWS region the gateway runs in; requests pass through it, so it must lie inside the jurisdiction."
  type        = string

  validation {
    condition     = contains(lookup(var.jurisdiction_cloud_regions, var.jurisdiction, []), var.aws_region)
    error_message = "aws_region lies outside the gateway's jurisdiction: its requests would transit another jurisdiction."
  }
}

variable "policy_regions" {
  description = "Jurisdiction -> Herald regions in failover order (module.residency.herald_regions)."
  type        = map(list(string))
}

variable "jurisdiction_cloud_regions" {
  description = "Jurisdiction -> AWS regions inside it (module.residency.cloud_regions)."
  type        = map(list(string))
}

variable "countries" {
  description = "The jurisdiction's countries (ISO 3166-1 alpha-2): DNS answers them with this gateway."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.countries : can(regex("^[A-Z]{2}$", c))])
    error_message = "countries must be ISO 3166-1 alpha-2 codes in upper case."
  }
}

variable "default_route" {
  description = "Whether this gateway also answers for countries no jurisdiction lists (exactly one gateway should)."
  type        = bool
  default     = false
}

variable "route53_zone_id" {
  description = "Hosted zone of the public API name."
  type        = string
}

variable "api_domain" {
  description = "The one public name apps call, e.g. api.herald.example; each jurisdiction's gateway answers it for its countries."
  type        = string
}

variable "jurisdiction_domain" {
  description = "This gateway's own name, e.g. eu.api.herald.example: the residency policy's gateway_url, where 307s point."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate covering api_domain and jurisdiction_domain."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the hosting region (module.region.vpc_id)."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets for the load balancer."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Subnets for the tasks and Redis."
  type        = list(string)
}

variable "ecs_cluster_arn" {
  description = "ECS cluster to run in (the hosting region's)."
  type        = string
}

variable "logs_kms_key_arn" {
  description = "KMS key for the log group."
  type        = string
}

variable "herald_image" {
  description = "The herald container image, pinned by digest (modules/service refuses a tag)."
  type        = string
}

variable "desired_count" {
  description = "Gateway tasks."
  type        = number
  default     = 3
}

variable "rate_limit_per_minute" {
  description = "Default per-key rate limit (HERALD_GATEWAY_RATE_LIMIT_PER_MINUTE)."
  type        = number
  default     = 1000
}

variable "consul_http_addr" {
  description = "Consul agent address: the gateway finds regions (herald-region) and the residency policy there."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
