variable "aws_region" {
  description = "The AWS region central analytics runs in. It holds aggregates only, so any region will do."
  type        = string
}

variable "vpc_id" {
  description = "VPC to run in (central root's network module)."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets for the ingest load balancer."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Subnets for the tasks and the database."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key for the database, secrets and logs."
  type        = string
}

variable "herald_image" {
  description = "The herald container image, pinned by digest (modules/service refuses a tag)."
  type        = string
}

variable "exporter_client_name" {
  description = "The name a region's exporter certificate carries (common name or DNS name), {region} standing for the region (HERALD_ANALYTICS_INGEST_CLIENT_NAME). The internal CA must issue a certificate with this name to that region's exporter only."
  type        = string
  default     = "{region}.exporters.herald.internal"

  validation {
    condition     = length(split("{region}", var.exporter_client_name)) == 2
    error_message = "exporter_client_name must hold {region} exactly once."
  }
}

variable "ingest_server_name" {
  description = "The name analytics' ingest certificate carries, which the exporters verify (their export.tls.server_name): the load balancer's address changes with it, a name does not."
  type        = string
  default     = "analytics.herald.internal"
}

variable "region_egress_cidrs" {
  description = "The regions' NAT addresses (module.region.egress_ips of every region root, as /32s): only they may post aggregates."
  type        = list(string)

  validation {
    condition     = length(var.region_egress_cidrs) > 0 && !contains(var.region_egress_cidrs, "0.0.0.0/0")
    error_message = "region_egress_cidrs must list the regions' egress ranges; ingest is not public."
  }
}

variable "k" {
  description = "The k-anonymity threshold central enforces (HERALD_ANALYTICS_K): cells with fewer distinct recipients are refused."
  type        = number
  default     = 10

  validation {
    condition     = var.k >= 5
    error_message = "k must be at least 5 in production: smaller cells come close to identifying users."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
