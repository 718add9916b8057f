# Central analytics: the ingest API the regions' exporters post k-anonymous aggregates to (over
# mutual TLS, terminated by the tasks), and
# its Postgres database (herald_analytics), whose schema has no column that can hold a user id.
# Nothing here is personal data, so it has no residency guard of its own; the guard is at the
# regions, which fold cells below k before anything leaves them.

locals {
  name = "herald-analytics"
  tags = merge(var.tags, { Project = "herald", Component = "analytics", PersonalData = "false" })

  # The ingest listener's mutual TLS, written to files by the start command: analytics' server
  # certificate and key (issued by the operator's internal CA for ingest_server_name,
  # docs/runbook.md) and the CA whose client certificates (the regions' exporters', named as
  # ingest.client_name says) are accepted.
  tls_secrets = {
    ingest-tls-cert    = { env = "HERALD_SECRET_INGEST_TLS_CERT", path = "/run/herald/ingest-tls.pem" }
    ingest-tls-key     = { env = "HERALD_SECRET_INGEST_TLS_KEY", path = "/run/herald/ingest-tls-key.pem" }
    exporter-client-ca = { env = "HERALD_SECRET_EXPORTER_CLIENT_CA", path = "/run/herald/exporter-client-ca.pem" }
  }
}

resource "aws_security_group" "postgres" {
  name        = "${local.name}-postgres"
  description = "Analytics database: from the analytics tasks only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "postgres_from_tasks" {
  security_group_id            = aws_security_group.postgres.id
  referenced_security_group_id = module.service.task_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "Analytics tasks"
}

resource "aws_db_subnet_group" "this" {
  name       = local.name
  subnet_ids = var.private_subnet_ids
  tags       = local.tags
}

resource "random_password" "postgres" {
  length  = 40
  special = false
}

resource "aws_db_instance" "this" {
  identifier              = local.name
  engine                  = "postgres"
  engine_version          = "17"
  instance_class          = "db.r7g.large"
  allocated_storage       = 100
  max_allocated_storage   = 400
  storage_type            = "gp3"
  storage_encrypted       = true
  kms_key_id              = var.kms_key_arn
  db_name                 = "herald_analytics"
  username                = "herald"
  password                = random_password.postgres.result
  multi_az                = true
  db_subnet_group_name    = aws_db_subnet_group.this.name
  vpc_security_group_ids  = [aws_security_group.postgres.id]
  backup_retention_period = 14
  copy_tags_to_snapshot   = true
  deletion_protection     = true
  tags                    = local.tags
}

resource "aws_secretsmanager_secret" "postgres_url" {
  name       = "${local.name}/postgres-url"
  kms_key_id = var.kms_key_arn
  tags       = local.tags
}

resource "aws_secretsmanager_secret_version" "postgres_url" {
  secret_id     = aws_secretsmanager_secret.postgres_url.id
  secret_string = "postgres://herald:${random_password.postgres.result}@${aws_db_instance.this.endpoint}/herald_analytics?sslmode=require"
}

# Created empty: operators put each certificate and key with `aws secretsmanager
# put-secret-value` (docs/runbook.md), so no key passes through Terraform state.
resource "aws_secretsmanager_secret" "tls" {
  for_each    = local.tls_secrets
  name        = "${local.name}/${each.key}"
  description = "Analytics ingest mutual TLS: ${each.key}"
  kms_key_id  = var.kms_key_arn
  tags        = local.tags
}

# Created empty; operators put the YAML with the regions' tokens (docs/runbook.md).
resource "aws_secretsmanager_secret" "config" {
  name       = "${local.name}/config"
  kms_key_id = var.kms_key_arn
  tags       = local.tags
}

resource "aws_ecs_cluster" "this" {
  name = local.name
  tags = local.tags
}

# The analytics tasks and their ingest load balancer (modules/service).
module "service" {
  source = "../service"

  name         = local.name
  aws_region   = var.aws_region
  cluster_arn  = aws_ecs_cluster.this.arn
  vpc_id       = var.vpc_id
  subnet_ids   = var.private_subnet_ids
  herald_image = var.herald_image
  # The region tokens, the operator token and the category lists live in the YAML config
  # (analytics.Config: regions, operator, categories), which operators put in the config
  # secret; the start command writes it to a file.
  herald_args = "analytics --config /run/herald/analytics.yaml"
  files = concat(
    [{ env = "HERALD_SECRET_ANALYTICS_CONFIG", path = "/run/herald/analytics.yaml" }],
    [for k, s in local.tls_secrets : { env = s.env, path = s.path }],
  )
  # The ingest listener (HTTPS, mutual TLS) is the one behind the load balancer. The operators'
  # listener (dashboard, queries) stays inside the task's network: nothing routes to 8090.
  container_port = 8091
  environment = [
    { name = "HERALD_ANALYTICS_LISTEN", value = "0.0.0.0:8090" },
    { name = "HERALD_ANALYTICS_INGEST_LISTEN", value = "0.0.0.0:8091" },
    { name = "HERALD_ANALYTICS_INGEST_TLS_CERT_FILE", value = local.tls_secrets["ingest-tls-cert"].path },
    { name = "HERALD_ANALYTICS_INGEST_TLS_KEY_FILE", value = local.tls_secrets["ingest-tls-key"].path },
    { name = "HERALD_ANALYTICS_INGEST_TLS_CLIENT_CA_FILE", value = local.tls_secrets["exporter-client-ca"].path },
    { name = "HERALD_ANALYTICS_INGEST_CLIENT_NAME", value = var.exporter_client_name },
    { name = "HERALD_ANALYTICS_K", value = tostring(var.k) },
    { name = "HERALD_LOG_FORMAT", value = "json" },
  ]
  secrets = concat(
    [
      { name = "HERALD_POSTGRES_URL", arn = aws_secretsmanager_secret.postgres_url.arn },
      { name = "HERALD_SECRET_ANALYTICS_CONFIG", arn = aws_secretsmanager_secret.config.arn },
    ],
    [for k, s in aws_secretsmanager_secret.tls : { name = local.tls_secrets[k].env, arn = s.arn }],
  )
  secrets_kms_key_arn   = var.kms_key_arn
  execution_policy_name = "read-analytics-secrets"

  services = {
    analytics = { family = local.name, cpu = 512, memory = 1024, desired_count = 2 }
  }
  # As analytics ran before modules/service: ECS's default stop timeout (30 s) and no deployment
  # circuit breaker. The region's roles and the gateways have both.
  stop_timeout               = null
  deployment_circuit_breaker = false

  log_group_name   = "/herald/analytics"
  logs_kms_key_arn = var.kms_key_arn
  security_group_descriptions = {
    tasks        = "Analytics tasks"
    tasks_egress = "Database, ECR, logs"
  }
  # Ingest: a network load balancer passes the TLS stream through to the tasks, which verify
  # each exporter's client certificate themselves (mutual TLS end to end; /readyz answers over
  # HTTPS without one). Open only to the regions' NAT addresses.
  load_balancer = {
    service             = "analytics"
    description         = "Aggregate ingest, from the regions only"
    subnet_ids          = var.public_subnet_ids
    allowed_cidrs       = var.region_egress_cidrs
    allowed_description = "A region's exporter"
    target_protocol     = "TCP"
    health_check        = { path = "/readyz" }
  }

  tags = local.tags
}
