# Amazon RDS for PostgreSQL: preferences, devices, templates, subscriptions (the source of
# truth for user state). Multi-AZ inside the region; no cross-region read replica and no
# automated-backup replication: copies go only where backup.tf's guarded copy actions say.

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
  identifier                      = local.name
  engine                          = "postgres"
  engine_version                  = var.postgres.engine_version
  instance_class                  = var.postgres.instance_class
  allocated_storage               = var.postgres.allocated_storage
  max_allocated_storage           = var.postgres.allocated_storage * 4
  storage_type                    = "gp3"
  storage_encrypted               = true
  kms_key_id                      = aws_kms_key.data.arn
  db_name                         = local.store_name
  username                        = "herald"
  password                        = random_password.postgres.result
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

resource "aws_secretsmanager_secret_version" "postgres_url" {
  secret_id     = aws_secretsmanager_secret.postgres_url.id
  secret_string = "postgres://herald:${random_password.postgres.result}@${aws_db_instance.this.endpoint}/${local.store_name}?sslmode=require"
}
