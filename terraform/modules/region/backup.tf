# AWS Backup for the stores that hold user state: the Postgres instance and the Cassandra nodes'
# volumes (selected by the HeraldBackup tag). Copies go only to var.backup_copy_vault_arns,
# whose validation refuses any vault outside the jurisdiction.

resource "aws_backup_vault" "this" {
  name        = local.name
  kms_key_arn = aws_kms_key.data.arn
  tags        = local.tags
}

resource "aws_backup_plan" "this" {
  name = local.name

  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.this.name
    schedule          = "cron(0 3 * * ? *)"

    lifecycle {
      delete_after = 35
    }

    dynamic "copy_action" {
      for_each = var.backup_copy_vault_arns
      content {
        destination_vault_arn = copy_action.value

        lifecycle {
          delete_after = 35
        }
      }
    }
  }

  tags = local.tags
}

resource "aws_iam_role" "backup" {
  name = "${local.name}-backup"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "backup.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "backup" {
  role       = aws_iam_role.backup.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"
}

resource "aws_backup_selection" "stores" {
  name         = "${local.name}-stores"
  plan_id      = aws_backup_plan.this.id
  iam_role_arn = aws_iam_role.backup.arn

  selection_tag {
    type  = "STRINGEQUALS"
    key   = "HeraldBackup"
    value = local.name
  }
}
