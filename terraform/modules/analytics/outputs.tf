output "ingest_url" {
  description = "Where the regions' exporters post aggregates."
  value       = "https://${module.service.load_balancer_dns_name}"
}

output "config_secret_arn" {
  description = "Secret holding analytics' YAML config (region tokens, categories); put it before the first start."
  value       = aws_secretsmanager_secret.config.arn
}
