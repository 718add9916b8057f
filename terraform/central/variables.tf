variable "herald_image" {
  description = "The herald image, pinned by digest (repo@sha256:...)."
  type        = string
}

variable "region_egress_cidrs" {
  description = "Every region's NAT addresses (/32s; each region root's egress_ips output)."
  type        = list(string)
}

variable "gateway_egress_cidrs" {
  description = "Every gateway's NAT addresses (/32s; the egress_ips of the roots that run a gateway)."
  type        = list(string)
}
