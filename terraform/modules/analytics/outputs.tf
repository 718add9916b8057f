output "ingest_url" {
  description = "Where the regions' exporters post aggregates (export.central_url): mutual TLS, passed through to the tasks."
  value       = "https://${module.service.load_balancer_dns_name}"
}

output "ingest_server_name" {
  description = "The name the exporters verify analytics' certificate by (export.tls.server_name)."
  value       = var.ingest_server_name
}

output "tls_secret_arns" {
  description = "Secrets to put before the first start: ingest-tls-cert and ingest-tls-key (analytics' server certificate for ingest_server_name) and exporter-client-ca (the CA of the exporters' certificates)."
  value       = { for k, s in aws_secretsmanager_secret.tls : k => s.arn }
}

output "config_secret_arn" {
  description = "Secret holding analytics' YAML config (region tokens, categories); put it before the first start."
  value       = aws_secretsmanager_secret.config.arn
}
