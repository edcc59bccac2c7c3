# A long-running service: prints a greeting, then a heartbeat line every few seconds.
# Run it on a dev agent:  drover job run examples/hello.hcl
job "hello" {
  datacenters = ["*"]
  type        = "service"

  group "greeter" {
    count = 1

    task "say" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "echo \"hello from Drover (alloc $NOMAD_ALLOC_ID)\"; while true; do echo alive; sleep 5; done"]
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
