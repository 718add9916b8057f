# The global tier (herald_global): apps, hashed API keys, the keyed-hash user directory and the
# parts of split sends. It holds no personal data (the directory key is an HMAC of the user id),
# which is why one database serves every jurisdiction's gateway: a gateway must find any user's
# jurisdiction to route or redirect it.

locals {
  name = "herald-global"
  tags = merge(var.tags, { Project = "herald", Component = "global-tier", PersonalData = "false" })
}

resource "aws_security_group" "this" {
  name        = local.name
  description = "Global tier: from the gateways' egress addresses only, TLS enforced"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "gateways" {
  for_each          = toset(var.gateway_egress_cidrs)
  security_group_id = aws_security_group.this.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  description       = "A gateway's NAT"
}

resource "aws_db_subnet_group" "this" {
  name       = local.name
  subnet_ids = var.public_subnet_ids
  tags       = local.tags
}

resource "aws_db_parameter_group" "this" {
  name   = local.name
  family = "postgres17"

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
  identifier              = local.name
  engine                  = "postgres"
  engine_version          = "17"
  instance_class          = "db.r7g.large"
  allocated_storage       = 100
  max_allocated_storage   = 400
  storage_type            = "gp3"
  storage_encrypted       = true
  kms_key_id              = var.kms_key_arn
  db_name                 = "herald_global"
  username                = "herald"
  password                = random_password.postgres.result
  multi_az                = true
  publicly_accessible     = true
  db_subnet_group_name    = aws_db_subnet_group.this.name
  vpc_security_group_ids  = [aws_security_group.this.id]
  parameter_group_name    = aws_db_parameter_group.this.name
  backup_retention_period = 35
  copy_tags_to_snapshot   = true
  deletion_protection     = true
  tags                    = local.tags
}

resource "aws_secretsmanager_secret" "url" {
  name       = "${local.name}/postgres-url"
  kms_key_id = var.kms_key_arn
  tags       = local.tags
}

resource "aws_secretsmanager_secret_version" "url" {
  secret_id     = aws_secretsmanager_secret.url.id
  secret_string = "postgres://herald:${random_password.postgres.result}@${aws_db_instance.this.endpoint}/herald_global?sslmode=verify-full"
}
