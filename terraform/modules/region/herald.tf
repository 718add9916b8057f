# The Herald roles on ECS Fargate, one service per role (modules/service). Store addresses reach
# the processes as the HERALD_* variables the config loader reads; settings that differ from the
# local defaults (replication, partitions) as a rendered config file, since Herald reads those
# from YAML only. The image needs /bin/sh for the start command (a distroless :debug or Debian
# base).

locals {
  region_config = yamlencode({
    name             = var.herald_region
    jurisdiction     = var.jurisdiction
    listen           = "0.0.0.0:8080"
    topic_partitions = 12
    replication      = 3
    kafka            = { version = replace(var.kafka.version, ".x", ".0") } # MSK's 3.9.x speaks 3.9.0
    # The jurisdiction's keyspace: 3 replicas in each region's data centre, queries in this one.
    cassandra = {
      replication = { for r in local.jurisdiction_regions : r => 3 }
      local_dc    = var.herald_region
      consistency = "LOCAL_QUORUM"
    }
    telemetry = { log_level = "info", log_format = "json" }
    # The API serves mutual TLS only: the gateways' client certificates, of the internal CA in
    # gateway-client-ca, are required of every call (docs/residency.md, the hop's threat model).
    tls = {
      cert_file      = "/run/herald/api-tls.pem"
      key_file       = "/run/herald/api-tls-key.pem"
      client_ca_file = "/run/herald/gateway-client-ca.pem"
    }
    # The master keys wrapping the users' data keys in Postgres: files the start command writes
    # from Secrets Manager (user_keys_master_secrets), never in the database or in this config.
    user_keys = {
      current     = var.user_keys_current_master_key
      master_keys = { for id, s in local.user_keys_master_secrets : id => s.path }
    }
  })

  environment = [
    { name = "HERALD_KAFKA_BROKERS", value = aws_msk_cluster.this.bootstrap_brokers },
    { name = "HERALD_CASSANDRA_HOSTS", value = join(",", [for ip in local.cassandra_ips : "${ip}:9042"]) },
    { name = "HERALD_REDIS_ADDR", value = "${aws_elasticache_replication_group.this.primary_endpoint_address}:6379" },
    { name = "HERALD_DISCOVERY_BACKEND", value = "consul" },
    { name = "CONSUL_HTTP_ADDR", value = var.consul_http_addr },
    { name = "HERALD_REGION_CONFIG_YAML", value = local.region_config },
    { name = "HERALD_DISPATCH_APNS_KEY_FILE", value = "/run/herald/apns-auth-key.p8" },
    { name = "HERALD_DISPATCH_FCM_CREDENTIALS_FILE", value = "/run/herald/fcm-service-account.json" },
  ]

  # Secret -> the variable it reaches the process as. APNs and FCM credentials are files in
  # Herald's config, so the start command writes those two to /run/herald first.
  provider_secrets = {
    apns-auth-key       = "HERALD_SECRET_APNS_AUTH_KEY"
    fcm-service-account = "HERALD_SECRET_FCM_SERVICE_ACCOUNT"
    smtp-password       = "HERALD_DISPATCH_SMTP_PASSWORD"
    twilio-auth-token   = "HERALD_DISPATCH_TWILIO_AUTH_TOKEN"
  }

  # The API's mutual TLS, written to files by the start command: the region's server
  # certificate and key (issued by the operator's internal CA, docs/runbook.md) and that CA,
  # whose client certificates (the gateways') are accepted.
  tls_secrets = {
    api-tls-cert      = { env = "HERALD_SECRET_API_TLS_CERT", path = "/run/herald/api-tls.pem" }
    api-tls-key       = { env = "HERALD_SECRET_API_TLS_KEY", path = "/run/herald/api-tls-key.pem" }
    gateway-client-ca = { env = "HERALD_SECRET_GATEWAY_CLIENT_CA", path = "/run/herald/gateway-client-ca.pem" }
  }

  # The master keys of the users' data keys (Herald's user_keys.master_keys), one secret per id,
  # written to a file by the start command: the base64 of 32 random bytes, the same value in
  # every region of the jurisdiction (they share the database the wrapped keys are in).
  user_keys_master_secrets = { for id in var.user_keys_master_keys : id => {
    env  = "HERALD_SECRET_USER_KEYS_MASTER_${upper(id)}"
    path = "/run/herald/user-keys-master-${id}.key"
  } }
}

resource "aws_ecs_cluster" "this" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

# Created empty: operators put each value with `aws secretsmanager put-secret-value`
# (docs/runbook.md), so no credential passes through Terraform state. The internal token is the
# one every gateway presents to every region (HERALD_GATEWAY_REGION_TOKEN).
resource "aws_secretsmanager_secret" "internal_token" {
  name        = "${local.name}/internal-token"
  description = "HERALD_REGION_INTERNAL_TOKEN: the bearer token the gateways present to this region"
  kms_key_id  = aws_kms_key.data.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret" "tls" {
  for_each    = local.tls_secrets
  name        = "${local.name}/${each.key}"
  description = "Region API mutual TLS: ${each.key}"
  kms_key_id  = aws_kms_key.data.arn
  tags        = local.tags
}

# The master keys that wrap the users' data keys, created empty like the others: the value
# never passes through Terraform state. Deleting one while rows are wrapped under it makes
# those users' Kafka records unreadable (docs/runbook.md, "Rotating the user-keys master key").
resource "aws_secretsmanager_secret" "user_keys_master" {
  for_each    = local.user_keys_master_secrets
  name        = "${local.name}/user-keys-master-${each.key}"
  description = "Master key ${each.key} wrapping the users' data keys (user_keys): base64 of 32 random bytes, the same in every region of ${var.jurisdiction}"
  kms_key_id  = aws_kms_key.data.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret" "provider" {
  for_each    = local.provider_secrets
  name        = "${local.name}/${each.key}"
  description = "Dispatch credential: ${each.key}"
  kms_key_id  = aws_kms_key.data.arn
  tags        = local.tags
}

module "roles" {
  source = "../service"

  name         = local.name
  aws_region   = var.aws_region
  cluster_arn  = aws_ecs_cluster.this.arn
  vpc_id       = module.network.vpc_id
  subnet_ids   = module.network.private_subnet_ids
  herald_image = var.herald_image
  herald_args  = "region --config /run/herald/region.yaml"
  files = concat([
    { env = "HERALD_REGION_CONFIG_YAML", path = "/run/herald/region.yaml", unset = false },
    { env = "HERALD_SECRET_APNS_AUTH_KEY", path = "/run/herald/apns-auth-key.p8" },
    { env = "HERALD_SECRET_FCM_SERVICE_ACCOUNT", path = "/run/herald/fcm-service-account.json" },
    { env = local.tls_secrets["api-tls-cert"].env, path = local.tls_secrets["api-tls-cert"].path },
    { env = local.tls_secrets["api-tls-key"].env, path = local.tls_secrets["api-tls-key"].path },
    { env = local.tls_secrets["gateway-client-ca"].env, path = local.tls_secrets["gateway-client-ca"].path },
  ], [for id, s in local.user_keys_master_secrets : { env = s.env, path = s.path }])
  container_port = 8080
  environment    = concat(local.environment, [for k, v in var.dispatch_environment : { name = k, value = v }])
  secrets = concat(
    [
      { name = "HERALD_POSTGRES_URL", arn = aws_secretsmanager_secret.postgres_url.arn },
      { name = "HERALD_REGION_INTERNAL_TOKEN", arn = aws_secretsmanager_secret.internal_token.arn },
    ],
    [for k, s in aws_secretsmanager_secret.provider : { name = local.provider_secrets[k], arn = s.arn }],
    [for k, s in aws_secretsmanager_secret.tls : { name = local.tls_secrets[k].env, arn = s.arn }],
    [for id, s in aws_secretsmanager_secret.user_keys_master : { name = local.user_keys_master_secrets[id].env, arn = s.arn }],
  )
  secrets_kms_key_arn   = aws_kms_key.data.arn
  execution_policy_name = "read-region-secrets"
  task_role             = true

  # One service per role, so each stage scales on its own; HERALD_REGION_ROLES picks the role.
  services = { for role, r in var.roles : role => {
    family        = "${local.name}-${role}"
    cpu           = r.cpu
    memory        = r.memory
    desired_count = r.desired_count
    environment   = [{ name = "HERALD_REGION_ROLES", value = role }]
  } }

  log_group_name   = "/herald/${var.herald_region}/roles"
  logs_kms_key_arn = aws_kms_key.logs.arn
  security_group_descriptions = {
    tasks                    = "Herald role tasks"
    tasks_egress             = "Stores in the VPC; providers, Consul and ECR through the NAT gateways"
    tasks_from_load_balancer = "Regional API behind the load balancer"
  }
  # The regional API: HTTPS, open only to the gateways' egress ranges. The tasks serve only
  # TLS (mutual TLS for the API; /readyz needs no client certificate), so the load balancer
  # reaches them, and health-checks them, over HTTPS.
  load_balancer = {
    service             = "api"
    name                = "${local.name}-api"
    description         = "Regional API load balancer"
    subnet_ids          = module.network.public_subnet_ids
    certificate_arn     = var.api_certificate_arn
    allowed_cidrs       = var.api_allowed_cidrs
    allowed_description = "Gateway egress"
    target_protocol     = "HTTPS"
    health_check        = { path = "/readyz", healthy_threshold = 2, unhealthy_threshold = 2, interval = 10 }
  }

  tags = local.tags
}
