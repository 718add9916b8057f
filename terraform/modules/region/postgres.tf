# Amazon RDS for PostgreSQL: the jurisdiction's database herald_<jurisdiction> (users,
# preferences, devices, templates, subscriptions, deferred sends, idempotency claims: the source
# of truth for user state), shared by the jurisdiction's regions. Multi-AZ inside each region.
# The jurisdiction's first region holds the primary; every other region of it holds a
# cross-region read replica (RDS streaming replication), the standby it promotes when the first
# region is lost (docs/runbook.md, "Losing a region"), and its tasks write to the primary over
# the peering. No replica and no automated-backup replication outside the jurisdiction: copies
# go only where backup.tf's guarded copy actions say.

resource "aws_db_subnet_group" "this" {
  name       = local.name
  subnet_ids = module.network.private_subnet_ids
  tags       = local.tags
}

resource "aws_security_group" "postgres" {
  name        = "${local.name}-postgres"
  description = "RDS Postgres: reachable from the Herald tasks only"
  vpc_id      = module.network.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "postgres_from_tasks" {
  security_group_id            = aws_security_group.postgres.id
  referenced_security_group_id = module.roles.task_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "Herald tasks"
}

# The jurisdiction's other regions' tasks write to the primary (peering.tf).
resource "aws_vpc_security_group_ingress_rule" "postgres_from_jurisdiction" {
  for_each          = local.is_primary ? toset(local.siblings) : toset([])
  security_group_id = aws_security_group.postgres.id
  cidr_ipv4         = var.region_vpc_cidrs[each.value]
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  description       = "Herald tasks of ${each.value}, a region of ${var.jurisdiction}"
}

# The primary, for a region that holds a replica of it.
data "aws_db_instance" "primary" {
  count                  = local.is_primary ? 0 : 1
  provider               = aws.primary
  db_instance_identifier = "herald-${local.primary_region}"
}

data "aws_secretsmanager_secret_version" "primary_postgres_url" {
  count     = local.is_primary ? 0 : 1
  provider  = aws.primary
  secret_id = "herald-${local.primary_region}/postgres-url"
}

resource "aws_db_parameter_group" "this" {
  name   = local.name
  family = "postgres${split(".", var.postgres.engine_version)[0]}"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  tags = local.tags
}

resource "random_password" "postgres" {
  length  = 40
  special = false
}

resource "aws_db_instance" "this" {
  identifier            = local.name
  engine                = "postgres"
  engine_version        = var.postgres.engine_version
  instance_class        = var.postgres.instance_class
  allocated_storage     = var.postgres.allocated_storage
  max_allocated_storage = var.postgres.allocated_storage * 4
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.data.arn
  # A replica takes the primary's database and users; promoted, it keeps them.
  replicate_source_db             = local.is_primary ? null : data.aws_db_instance.primary[0].db_instance_arn
  db_name                         = local.is_primary ? local.store_name : null
  username                        = local.is_primary ? "herald" : null
  password                        = local.is_primary ? random_password.postgres.result : null
  multi_az                        = true
  db_subnet_group_name            = aws_db_subnet_group.this.name
  vpc_security_group_ids          = [aws_security_group.postgres.id]
  parameter_group_name            = aws_db_parameter_group.this.name
  backup_retention_period         = var.postgres.backup_retention_d
  copy_tags_to_snapshot           = true
  deletion_protection             = true
  final_snapshot_identifier       = "${local.name}-final"
  performance_insights_enabled    = true
  performance_insights_kms_key_id = aws_kms_key.data.arn
  enabled_cloudwatch_logs_exports = ["postgresql"]
  tags                            = merge(local.tags, { HeraldBackup = local.name })
}

resource "aws_secretsmanager_secret" "postgres_url" {
  name        = "${local.name}/postgres-url"
  description = "HERALD_POSTGRES_URL of the region's roles"
  kms_key_id  = aws_kms_key.data.arn
  tags        = local.tags
}

# Every server of the jurisdiction this region knows, with target_session_attrs=read-write:
# connections go to whichever is the primary, and follow a promotion without a change. A
# replica's region takes the primary's credentials from the primary's own secret.
locals {
  postgres_credentials = local.is_primary ? "herald:${random_password.postgres.result}" : regex("^postgres://([^@]+)@", data.aws_secretsmanager_secret_version.primary_postgres_url[0].secret_string)[0]
  postgres_hosts       = local.is_primary ? aws_db_instance.this.endpoint : "${data.aws_db_instance.primary[0].endpoint},${aws_db_instance.this.endpoint}"
}

resource "aws_secretsmanager_secret_version" "postgres_url" {
  secret_id     = aws_secretsmanager_secret.postgres_url.id
  secret_string = "postgres://${local.postgres_credentials}@${local.postgres_hosts}/${local.store_name}?sslmode=require&target_session_attrs=read-write"
}
