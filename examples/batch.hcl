# A batch job: runs once to completion; its exit code is recorded in the task's events.
job "countdown" {
  type = "batch"

  group "count" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    task "count" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "for i in 3 2 1; do echo $i; sleep 1; done; echo liftoff"]
      }

      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
