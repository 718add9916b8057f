# Global routing: one public name, answered per country with the gateway of the country's
# jurisdiction (Route 53 geolocation records). Each jurisdiction's root adds the records of its
# own countries, so no root needs another's state. Countries no jurisdiction lists get the
# default_route gateway, which answers them 422 or 307 as the policy says; the jurisdiction's own
# name (jurisdiction_domain) is where 307s send clients.

resource "aws_route53_record" "country" {
  for_each       = toset(var.countries)
  zone_id        = var.route53_zone_id
  name           = var.api_domain
  type           = "A"
  set_identifier = "${var.jurisdiction}-${each.key}"

  geolocation_routing_policy {
    country = each.key
  }

  alias {
    name                   = module.service.load_balancer_dns_name
    zone_id                = module.service.load_balancer_zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "default" {
  count          = var.default_route ? 1 : 0
  zone_id        = var.route53_zone_id
  name           = var.api_domain
  type           = "A"
  set_identifier = "default"

  geolocation_routing_policy {
    country = "*"
  }

  alias {
    name                   = module.service.load_balancer_dns_name
    zone_id                = module.service.load_balancer_zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "jurisdiction" {
  zone_id = var.route53_zone_id
  name    = var.jurisdiction_domain
  type    = "A"

  alias {
    name                   = module.service.load_balancer_dns_name
    zone_id                = module.service.load_balancer_zone_id
    evaluate_target_health = true
  }
}
