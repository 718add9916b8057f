# A jurisdiction's gateway: public HTTPS load balancer, the gateway tasks, a small Redis for
# rate limits, and its secrets. It runs in the hosting region's VPC and ECS cluster. The global
# tier it reads (apps, hashed API keys, keyed-hash directory: no personal data) is one database
# for every gateway, created by terraform/central; its URL is a secret here.

locals {
  name = "herald-gw-${lower(var.jurisdiction)}"
  tags = merge(var.tags, { Project = "herald", Component = "gateway", Jurisdiction = var.jurisdiction })

  # Secret -> the variable it reaches the process as. All are created empty and put by
  # operators (docs/runbook.md), so none passes through Terraform state.
  secrets = {
    global-tier-url  = "HERALD_POSTGRES_URL"
    region-token     = "HERALD_GATEWAY_REGION_TOKEN"
    directory-secret = "HERALD_SECRET_DIRECTORY"
    # The regions' mutual TLS: the gateway's client certificate and key, and the internal CA
    # that certified the regions' API certificates (written to files, below).
    region-tls-cert = "HERALD_SECRET_REGION_TLS_CERT"
    region-tls-key  = "HERALD_SECRET_REGION_TLS_KEY"
    region-ca       = "HERALD_SECRET_REGION_CA"
  }
}

resource "aws_kms_key" "this" {
  description         = "${local.name}: secrets and Redis"
  enable_key_rotation = true
  multi_region        = false
  tags                = local.tags
}

resource "aws_secretsmanager_secret" "this" {
  for_each    = local.secrets
  name        = "${local.name}/${each.key}"
  description = "Gateway ${var.jurisdiction}: ${each.value}"
  kms_key_id  = aws_kms_key.this.arn
  tags        = local.tags
}

resource "aws_security_group" "redis" {
  name        = "${local.name}-redis"
  description = "Gateway rate-limit Redis"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  security_group_id            = aws_security_group.redis.id
  referenced_security_group_id = module.service.task_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  description                  = "Gateway tasks"
}

resource "aws_elasticache_subnet_group" "this" {
  name       = local.name
  subnet_ids = var.private_subnet_ids
  tags       = local.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = local.name
  description                = "Gateway ${var.jurisdiction}: per-key rate limits"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = "cache.t4g.medium"
  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.this.arn
  transit_encryption_enabled = false
  tags                       = local.tags
}

# The gateway tasks and their public load balancer (modules/service).
module "service" {
  source = "../service"

  name         = local.name
  aws_region   = var.aws_region
  cluster_arn  = var.ecs_cluster_arn
  vpc_id       = var.vpc_id
  subnet_ids   = var.private_subnet_ids
  herald_image = var.herald_image
  herald_args  = "gateway"
  files = [
    { env = "HERALD_SECRET_DIRECTORY", path = "/run/herald/directory-secret" },
    { env = "HERALD_SECRET_REGION_TLS_CERT", path = "/run/herald/region-tls.pem" },
    { env = "HERALD_SECRET_REGION_TLS_KEY", path = "/run/herald/region-tls-key.pem" },
    { env = "HERALD_SECRET_REGION_CA", path = "/run/herald/region-ca.pem" },
  ]
  container_port = 8080
  environment = [
    { name = "HERALD_GATEWAY_LISTEN", value = "0.0.0.0:8080" },
    { name = "HERALD_GATEWAY_JURISDICTION", value = var.jurisdiction },
    # How the gateway recognises its own gateway_url in the policy (and does not 307 to itself).
    { name = "HERALD_GATEWAY_PUBLIC_URL", value = "https://${var.jurisdiction_domain}" },
    { name = "HERALD_GATEWAY_DIRECTORY_SECRET_FILE", value = "/run/herald/directory-secret" },
    { name = "HERALD_GATEWAY_REGION_TLS_CERT_FILE", value = "/run/herald/region-tls.pem" },
    { name = "HERALD_GATEWAY_REGION_TLS_KEY_FILE", value = "/run/herald/region-tls-key.pem" },
    { name = "HERALD_GATEWAY_REGION_TLS_CA_FILE", value = "/run/herald/region-ca.pem" },
    # Region tasks register their changing task IPs in Consul: a region's certificate names the
    # region instead ("<region>.regions.herald.internal"), and the gateway verifies each
    # endpoint against the name of the region Consul lists it under.
    { name = "HERALD_GATEWAY_REGION_TLS_SERVER_NAME", value = "{region}.regions.herald.internal" },
    { name = "HERALD_GATEWAY_RATE_LIMIT_PER_MINUTE", value = tostring(var.rate_limit_per_minute) },
    { name = "HERALD_REDIS_ADDR", value = "${aws_elasticache_replication_group.this.primary_endpoint_address}:6379" },
    { name = "HERALD_DISCOVERY_BACKEND", value = "consul" },
    { name = "CONSUL_HTTP_ADDR", value = var.consul_http_addr },
    { name = "HERALD_LOG_FORMAT", value = "json" },
  ]
  secrets               = [for k, s in aws_secretsmanager_secret.this : { name = local.secrets[k], arn = s.arn }]
  secrets_kms_key_arn   = aws_kms_key.this.arn
  execution_policy_name = "read-gateway-secrets"

  services = {
    gateway = { family = local.name, cpu = 1024, memory = 2048, desired_count = var.desired_count }
  }

  log_group_name   = "/herald/gateway-${lower(var.jurisdiction)}"
  logs_kms_key_arn = var.logs_kms_key_arn
  security_group_descriptions = {
    tasks        = "Gateway tasks"
    tasks_egress = "Regions' APIs, the global tier, Consul, Redis"
  }
  load_balancer = {
    service             = "gateway"
    description         = "Public API"
    subnet_ids          = var.public_subnet_ids
    certificate_arn     = var.certificate_arn
    allowed_cidrs       = ["0.0.0.0/0"]
    allowed_description = "Apps and user clients"
    health_check        = { path = "/readyz", healthy_threshold = 2, unhealthy_threshold = 2, interval = 10 }
  }

  tags = local.tags
}
