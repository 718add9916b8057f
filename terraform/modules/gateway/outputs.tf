output "gateway_url" {
  description = "The jurisdiction's own gateway: put it in the residency policy as gateway_url."
  value       = "https://${var.jurisdiction_domain}"
}

output "load_balancer_dns_name" {
  description = "The load balancer behind both names."
  value       = module.service.load_balancer_dns_name
}

output "secret_arns" {
  description = "Secrets operators must put before the first start: global-tier-url, region-token, directory-secret."
  value       = { for k, s in aws_secretsmanager_secret.this : k => s.arn }
}
