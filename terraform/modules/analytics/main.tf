# Central analytics: the ingest API the regions' exporters post k-anonymous aggregates to, and
# its Postgres database (herald_analytics), whose schema has no column that can hold a user id.
# Nothing here is personal data, so it has no residency guard of its own; the guard is at the
# regions, which fold cells below k before anything leaves them.

locals {
  name = "herald-analytics"
  tags = merge(var.tags, { Project = "herald", Component = "analytics", PersonalData = "false" })

  # The region tokens and category lists live in the YAML config (analytics.Config), which
  # operators put in the config secret; the start command writes it to a file.
  start_command = join(" && ", [
    "umask 077",
    "mkdir -p /run/herald",
    "printf '%s' \"$HERALD_SECRET_ANALYTICS_CONFIG\" >/run/herald/analytics.yaml",
    "unset HERALD_SECRET_ANALYTICS_CONFIG",
    "exec herald analytics --config /run/herald/analytics.yaml",
  ])
}

resource "aws_security_group" "postgres" {
  name        = "${local.name}-postgres"
  description = "Analytics database: from the analytics tasks only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "postgres_from_tasks" {
  security_group_id            = aws_security_group.postgres.id
  referenced_security_group_id = aws_security_group.tasks.id
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

# Created empty; operators put the YAML with the regions' tokens (docs/runbook.md).
resource "aws_secretsmanager_secret" "config" {
  name       = "${local.name}/config"
  kms_key_id = var.kms_key_arn
  tags       = local.tags
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/herald/analytics"
  retention_in_days = 30
  kms_key_id        = var.kms_key_arn
  tags              = local.tags
}

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "Aggregate ingest, from the regions only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb_from_regions" {
  for_each          = toset(var.region_egress_cidrs)
  security_group_id = aws_security_group.alb.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "A region's exporter"
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 8090
  to_port                      = 8090
  description                  = "To the analytics tasks"
}

resource "aws_security_group" "tasks" {
  name        = "${local.name}-tasks"
  description = "Analytics tasks"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = 8090
  to_port                      = 8090
  description                  = "From the load balancer"
}

resource "aws_vpc_security_group_egress_rule" "tasks_out" {
  security_group_id = aws_security_group.tasks.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "Database, ECR, logs"
}

resource "aws_lb" "this" {
  name                       = local.name
  load_balancer_type         = "application"
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  tags                       = local.tags
}

resource "aws_lb_target_group" "this" {
  name                 = local.name
  port                 = 8090
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path = "/readyz"
  }

  tags = local.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}

resource "aws_ecs_cluster" "this" {
  name = local.name
  tags = local.tags
}

data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  name = "read-analytics-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Effect = "Allow", Action = "secretsmanager:GetSecretValue", Resource = [aws_secretsmanager_secret.postgres_url.arn, aws_secretsmanager_secret.config.arn] },
      { Effect = "Allow", Action = "kms:Decrypt", Resource = var.kms_key_arn },
    ]
  })
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = aws_iam_role.execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "ARM64"
  }

  container_definitions = jsonencode([{
    name       = "herald"
    image      = var.herald_image
    essential  = true
    entryPoint = ["/bin/sh", "-c"]
    command    = [local.start_command]
    environment = [
      { name = "HERALD_ANALYTICS_LISTEN", value = "0.0.0.0:8090" },
      { name = "HERALD_ANALYTICS_K", value = tostring(var.k) },
      { name = "HERALD_LOG_FORMAT", value = "json" },
    ]
    secrets = [
      { name = "HERALD_POSTGRES_URL", valueFrom = aws_secretsmanager_secret.postgres_url.arn },
      { name = "HERALD_SECRET_ANALYTICS_CONFIG", valueFrom = aws_secretsmanager_secret.config.arn },
    ]
    portMappings = [{ containerPort = 8090, protocol = "tcp" }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = "analytics"
      }
    }
  }])

  tags = local.tags
}

resource "aws_ecs_service" "this" {
  name            = "analytics"
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.this.arn
  desired_count   = 2
  launch_type     = "FARGATE"

  network_configuration {
    subnets         = var.private_subnet_ids
    security_groups = [aws_security_group.tasks.id]
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this.arn
    container_name   = "herald"
    container_port   = 8090
  }

  tags = local.tags
}
