# Every block of Nomad's jobspec that Drover reads. `drover job validate examples/full.hcl`
# lists the ones it does not act on yet.
variable "image_version" {
  type    = string
  default = "1.25"
}

variable "replicas" {
  type    = number
  default = 3
}

locals {
  team    = "storefront"
  labels  = ["web", local.team]
  version = "v${var.image_version}"
}

job "full" {
  region      = "global"
  datacenters = ["dc1", "dc*"]
  type        = "service"
  priority    = 70
  node_pool   = "default"
  all_at_once = false

  meta {
    team    = local.team
    version = upper(local.version)
  }

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  constraint {
    distinct_hosts = true
  }

  affinity {
    attribute = "${node.datacenter}"
    value     = "dc1"
    weight    = 80
  }

  spread {
    attribute = "${node.datacenter}"
    weight    = 100

    target "dc1" {
      percent = 70
    }

    target "dc2" {
      percent = 30
    }
  }

  update {
    max_parallel      = 2
    health_check      = "checks"
    min_healthy_time  = "15s"
    healthy_deadline  = "5m"
    progress_deadline = "10m"
    auto_revert       = true
    canary            = 1
    stagger           = "30s"
  }

  group "web" {
    count = var.replicas

    constraint {
      attribute = "${meta.rack}"
      operator  = "distinct_property"
      value     = "2"
    }

    network {
      mode = "bridge"

      port "http" {
        to = 8080
      }

      port "admin" {
        static = 9090
      }

      dns {
        servers = ["1.1.1.1"]
      }
    }

    service {
      name = "web"
      port = "http"
      tags = local.labels

      check {
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"

        header {
          X-Probe = ["drover"]
        }

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    volume "data" {
      type      = "host"
      source    = "web-data"
      read_only = false
    }

    restart {
      attempts = 2
      interval = "30m"
      delay    = "15s"
      mode     = "fail"
    }

    reschedule {
      attempts       = 3
      interval       = "1h"
      delay          = "30s"
      delay_function = "exponential"
      max_delay      = "10m"
      unlimited      = false
    }

    migrate {
      max_parallel = 1
    }

    ephemeral_disk {
      size   = 500
      sticky = true
    }

    scaling {
      min = 1
      max = 10

      policy {
        cooldown = "1m"
      }
    }

    shutdown_delay = "5s"

    task "server" {
      driver = "raw_exec"
      user   = "nobody"

      config {
        command = "/usr/bin/web"
        args    = ["--port", "${NOMAD_PORT_http}", "--version", local.version]
      }

      env {
        GREETING = format("hello %s", local.team)
        REPLICAS = var.replicas
      }

      resources {
        cpu        = 500
        memory     = 256
        memory_max = 512

        device "nvidia/gpu" {
          count = 1
        }
      }

      template {
        data        = <<EOT
upstream = {{ env "NOMAD_ADDR_http" }}
EOT
        destination = "local/app.conf"
        change_mode = "signal"
        change_signal = "SIGHUP"
      }

      artifact {
        source      = "https://example.com/app.tar.gz"
        destination = "local/app"

        options {
          checksum = "sha256:abc"
        }
      }

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      volume_mount {
        volume      = "data"
        destination = "/srv/data"
      }

      identity {
        env  = true
        file = true
        aud  = ["drover"]
      }

      vault {
        policies = ["web"]
      }

      secret "db" {
        provider = "kv"
        path     = "secret/db"
      }

      logs {
        max_files     = 3
        max_file_size = 5
      }

      kill_timeout   = "30s"
      kill_signal    = "SIGINT"
      leader         = true
      shutdown_delay = "2s"
    }
  }

  group "batchy" {
    task "once" {
      driver = "raw_exec"

      dispatch_payload {
        file = "input.json"
      }

      csi_plugin {
        id        = "hostpath"
        type      = "monolith"
        mount_dir = "/csi"
      }

      config {
        command = "/bin/true"
      }
    }
  }
}
