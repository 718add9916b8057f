variable "vpc_id" {
  description = "VPC to run in (central root's network module)."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the database: public, because gateways in other AWS regions connect over TLS (regions never peer VPCs)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key for the database and its secret."
  type        = string
}

variable "gateway_egress_cidrs" {
  description = "Every gateway's NAT addresses: only they may connect."
  type        = list(string)

  validation {
    condition     = length(var.gateway_egress_cidrs) > 0 && !contains(var.gateway_egress_cidrs, "0.0.0.0/0")
    error_message = "gateway_egress_cidrs must list the gateways' egress ranges; the global tier is not open to the internet."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
