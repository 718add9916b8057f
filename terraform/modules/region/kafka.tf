# Amazon MSK. Herald's Kafka client (sarama, platform/kafka) has no TLS settings yet, so brokers
# accept plaintext from inside the VPC as well as TLS; at rest everything is under the data key.

resource "aws_security_group" "kafka" {
  name        = "${local.name}-kafka"
  description = "MSK brokers: reachable from the Herald tasks only"
  vpc_id      = module.network.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "kafka_from_tasks" {
  for_each                     = toset(["9092", "9094"])
  security_group_id            = aws_security_group.kafka.id
  referenced_security_group_id = module.roles.task_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
  description                  = "Herald tasks to brokers (${each.value == "9092" ? "plaintext" : "TLS"})"
}

resource "aws_msk_configuration" "this" {
  name           = local.name
  kafka_versions = [var.kafka.version]
  # Herald creates its topics itself (herald migrate region); retention matches the 24 h the
  # erasure design relies on (docs/architecture.md).
  server_properties = <<-PROPS
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    unclean.leader.election.enable=false
    log.retention.hours=24
  PROPS
}

resource "aws_cloudwatch_log_group" "kafka" {
  name              = "/herald/${var.herald_region}/msk"
  retention_in_days = 14
  kms_key_id        = aws_kms_key.logs.arn
  tags              = local.tags
}

resource "aws_msk_cluster" "this" {
  cluster_name           = local.name
  kafka_version          = var.kafka.version
  number_of_broker_nodes = 3 * var.kafka.broker_multiplier

  broker_node_group_info {
    instance_type   = var.kafka.instance_type
    client_subnets  = module.network.private_subnet_ids
    security_groups = [aws_security_group.kafka.id]

    storage_info {
      ebs_storage_info {
        volume_size = var.kafka.volume_size_gb
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.data.arn

    encryption_in_transit {
      client_broker = "TLS_PLAINTEXT"
      in_cluster    = true
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.kafka.name
      }
    }
  }

  tags = local.tags
}
