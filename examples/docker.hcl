# A docker service, as Nomad runs it: the engine on the node pulls (or already has) the image;
# the port labelled "http" is published on the node's address and mapped to 8080 inside.
# `drover job validate examples/docker.hcl` checks every key of the config block.
job "web" {
  datacenters = ["dc1"]

  group "web" {
    network {
      port "http" {
        to = 8080
      }
    }

    task "httpd" {
      driver = "docker"

      config {
        image   = "busybox:1.36"
        command = "httpd"
        args    = ["-f", "-p", "8080", "-h", "/local"]
        ports   = ["http"]
      }

      template {
        data        = "hello from {{ env \"NOMAD_ALLOC_ID\" }}\n"
        destination = "local/index.html"
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
