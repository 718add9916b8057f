# The template uses ${seeds}; the call passes only cluster_name.
resource "aws_instance" "node" {
  ami           = "ami-0123456789abcdef0"
  instance_type = "r7g.xlarge"
  user_data = templatefile("${path.module}/init.sh.tftpl", {
    cluster_name = "herald"
  })
}
