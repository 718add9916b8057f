# A typo: aws_security_group.task instead of aws_security_group.tasks.
resource "aws_security_group" "tasks" {
  name = "tasks"
}

resource "aws_vpc_security_group_ingress_rule" "https" {
  security_group_id = aws_security_group.task.id
  ip_protocol       = "tcp"
}
