output "analytics_ingest_url" {
  description = "Where the regions' exporters post aggregates."
  value       = module.analytics.ingest_url
}

output "analytics_config_secret_arn" {
  description = "Put analytics' YAML config (region tokens, categories) here before the first start."
  value       = module.analytics.config_secret_arn
}

output "global_tier_url_secret_arn" {
  description = "The global tier's URL; copy it into every gateway's global-tier-url secret."
  value       = module.global_tier.postgres_url_secret_arn
}

output "analytics_ingest_server_name" {
  description = "The name the regions' exporters verify analytics' certificate by (export.tls.server_name)."
  value       = module.analytics.ingest_server_name
}
