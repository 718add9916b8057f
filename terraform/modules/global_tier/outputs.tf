output "postgres_url_secret_arn" {
  description = "Secret with the global tier's URL; copy its value into each gateway's global-tier-url secret."
  value       = aws_secretsmanager_secret.url.arn
}

output "endpoint" {
  description = "The database endpoint."
  value       = aws_db_instance.this.endpoint
}
