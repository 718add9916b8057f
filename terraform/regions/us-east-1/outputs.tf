output "api_url" {
  description = "The regional API; register it in Consul as herald-region."
  value       = module.region.api_url
}

output "egress_ips" {
  description = "The region's NAT addresses: allow-list them at analytics (terraform/central)."
  value       = module.region.egress_ips
}

output "internal_token_secret_arn" {
  description = "Where to put the token the gateways present to this region."
  value       = module.region.internal_token_secret_arn
}

output "gateway_url" {
  description = "The jurisdiction's gateway: its gateway_url in the residency policy."
  value       = module.gateway.gateway_url
}

output "gateway_secret_arns" {
  description = "Gateway secrets to put before the first start."
  value       = module.gateway.secret_arns
}
