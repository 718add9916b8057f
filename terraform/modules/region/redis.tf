# Amazon ElastiCache for Redis OSS: dedup keys, caches, rate-limit buckets, inbox pub/sub.
# Herald's Redis client (platform/redis) has no TLS option yet, so in-transit encryption (and
# with it AUTH) is off and the security group is the boundary; at rest it uses the data key.
# No global datastore: nothing replicates to another region.

resource "aws_elasticache_subnet_group" "this" {
  name       = local.name
  subnet_ids = module.network.private_subnet_ids
  tags       = local.tags
}

resource "aws_security_group" "redis" {
  name        = "${local.name}-redis"
  description = "ElastiCache Redis: reachable from the Herald tasks only"
  vpc_id      = module.network.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  security_group_id            = aws_security_group.redis.id
  referenced_security_group_id = module.roles.task_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  description                  = "Herald tasks"
}

# Dedup keys are hashes of many fields (region/dedup): a large topic send's hold about 60,000
# each, and freeing one inline when it expires would stall every other command.
resource "aws_elasticache_parameter_group" "this" {
  name   = local.name
  family = "redis${split(".", var.redis.engine_version)[0]}"

  parameter {
    name  = "lazyfree-lazy-expire"
    value = "yes"
  }

  tags = local.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = local.name
  description                = "Herald ${var.herald_region}: dedup, caches, rate limits"
  engine                     = "redis"
  engine_version             = var.redis.engine_version
  node_type                  = var.redis.node_type
  num_cache_clusters         = var.redis.nodes
  port                       = 6379
  automatic_failover_enabled = var.redis.nodes > 1
  multi_az_enabled           = var.redis.nodes > 1
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  parameter_group_name       = aws_elasticache_parameter_group.this.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.data.arn
  transit_encryption_enabled = false
  snapshot_retention_limit   = 0
  tags                       = local.tags
}
