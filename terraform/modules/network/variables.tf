variable "name" {
  description = "Prefix of every resource's name, e.g. herald-eu-west-1."
  type        = string
}

variable "cidr_block" {
  description = "The VPC's IPv4 range; a /16 leaves room for three public and three private /20s."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.cidr_block)) && tonumber(split("/", var.cidr_block)[1]) <= 16
    error_message = "cidr_block must be an IPv4 CIDR of /16 or larger."
  }
}

variable "availability_zones" {
  description = "Three availability zones of the provider's region: one public and one private subnet in each."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) == 3
    error_message = "availability_zones must name exactly three zones."
  }
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the VPC flow logs."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
