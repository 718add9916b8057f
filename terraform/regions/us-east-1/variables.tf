variable "herald_image" {
  description = "The herald image, pinned by digest (repo@sha256:...)."
  type        = string
}

variable "api_certificate_arn" {
  description = "ACM certificate (in this AWS region) for the regional API's load balancer."
  type        = string
}

variable "gateway_egress_cidrs" {
  description = "Every gateway's NAT addresses (/32s): the only callers of the regional API."
  type        = list(string)
}

variable "consul_http_addr" {
  description = "Consul agent address for discovery and live config."
  type        = string
}

variable "cassandra_ami_id" {
  description = "Debian 12 arm64 AMI of this AWS region for the Cassandra nodes."
  type        = string
}

variable "backup_copy_vault_arns" {
  description = "Backup vaults receiving copies of this region's backups; the region module refuses any outside US."
  type        = list(string)
  default     = []
}

variable "dispatch_environment" {
  description = "Non-secret provider settings (HERALD_DISPATCH_*)."
  type        = map(string)
  default     = {}
}

variable "route53_zone_id" {
  description = "Hosted zone of the public API name."
  type        = string
}

variable "api_domain" {
  description = "The one public name apps call, e.g. api.herald.example."
  type        = string
}

variable "gateway_certificate_arn" {
  description = "ACM certificate (in this AWS region) for api_domain and the jurisdiction's gateway name."
  type        = string
}
